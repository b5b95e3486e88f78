package kubescale

import (
	"fmt"
	"strings"
	"time"
)

// report is everything the summary prints.
type report struct {
	idle, after1, after2 sample // agent state: ready, after phase 1, after phase 2
	phase1               phase1Result
	phase2               phase2Result
	check                checkResult
}

func (r *report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n== edge-agent Kubernetes scale: %d Services x 3 endpoints, debounce 100ms ==\n\n", numServices)
	row := func(name, value, note string) {
		fmt.Fprintf(&b, "  %-40s %12s  %s\n", name, value, note)
	}

	p1 := r.phase1
	fmt.Fprintf(&b, "phase 1: create %d Services + EndpointSlices (%d workers)\n", numServices, createWorkers)
	row("API creates done", secs(p1.createsDone), "")
	row("first host serving", secs(p1.firstHost), "")
	row("half the hosts serving", secs(p1.hostP50), "")
	row("all hosts serving", secs(p1.allServing), fmt.Sprintf("(%d poll rounds)", p1.rounds))
	row("last host serving after last create", ms(p1.allServing-p1.createsDone), "")
	row("per Service, slice created -> serving p50", ms(p1.lagP50), "(resolution: one poll round)")
	row("per Service, slice created -> serving p99", ms(p1.lagP99), "")
	row("per Service, slice created -> serving max", ms(p1.lagMax), "")
	row("agent CPU", secs(p1.cpu), cpuShare(p1.cpu, p1.allServing))
	row("config generations", gens(r.after1.generation-r.idle.generation), "")
	row("Services serving (metric)", fmt.Sprintf("%.0f", r.after1.serving), "")

	p2 := r.phase2
	l := p2.latencies
	p99 := percentile(l, 0.99)
	fmt.Fprintf(&b, "phase 2: %d host changes, %v apart (update -> first 200)\n", numChanges, changeSpacing)
	row("p50", ms(percentile(l, 0.5)), "")
	row("p90", ms(percentile(l, 0.9)), "")
	row("p99", ms(p99), goal(p99 <= goalChangeP99, "<= 1 s"))
	row("max", ms(l[len(l)-1]), "")
	row("min", ms(l[0]), "")
	row("phase length", secs(p2.took), "")
	row("agent CPU", secs(p2.cpu), cpuShare(p2.cpu, p2.took))
	row("config generations", gens(r.after2.generation-r.after1.generation), "")
	row("afterwards: unchanged hosts serving", fmt.Sprintf("%d/%d", r.check.unchangedServing, numServices-numChanges), "")
	row("afterwards: old hosts still serving", fmt.Sprintf("%d/%d", r.check.oldServing, numChanges), "")

	fmt.Fprintf(&b, "agent memory\n")
	row("peak RSS (VmHWM)", mib(float64(r.after2.peakRSS)), goal(r.after2.peakRSS < goalPeakRSS, "< 200 MiB"))
	for _, m := range []struct {
		when string
		s    sample
	}{{"when ready", r.idle}, {"after phase 1", r.after1}, {"after phase 2", r.after2}} {
		row("RSS "+m.when, mib(float64(m.s.rss)), "")
		row("Go heap in use "+m.when, mib(m.s.heapInuse), "")
	}
	return b.String()
}

func goal(met bool, what string) string {
	if met {
		return "goal " + what + ": met"
	}
	return "goal " + what + ": MISSED"
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
func ms(d time.Duration) string   { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
func mib(b float64) string        { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
func gens(n float64) string       { return fmt.Sprintf("%.0f", n) }

// cpuShare is CPU time as a share of one core over the wall time.
func cpuShare(cpu, wall time.Duration) string {
	if wall <= 0 {
		return ""
	}
	return fmt.Sprintf("(%.0f%% of one core)", 100*cpu.Seconds()/wall.Seconds())
}
