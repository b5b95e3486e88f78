package config

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "30s", want: 30 * time.Second},
		{in: "1m30s", want: 90 * time.Second},
		{in: "250ms", want: 250 * time.Millisecond},
		{in: "1h", want: time.Hour},
		{in: "1.5s", want: 1500 * time.Millisecond},
		{in: "0s", want: 0},
		{in: "0", want: 0}, // time.ParseDuration accepts a bare zero
		{in: "30", wantErr: `invalid duration "30"`},
		{in: "-1s", wantErr: `invalid duration "-1s": must not be negative`},
		{in: "-0.5ms", wantErr: "must not be negative"},
		{in: "abc", wantErr: `invalid duration "abc": want a value such as "30s"`},
		{in: "", wantErr: `invalid duration ""`},
		{in: "10 s", wantErr: "invalid duration"},
		{in: "5d", wantErr: "invalid duration"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseDuration(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDuration(%q): %v", tt.in, err)
			}
			if got.D() != tt.want {
				t.Errorf("ParseDuration(%q) = %v, want %v", tt.in, got.D(), tt.want)
			}
		})
	}
}

func TestDurationUnmarshalYAML(t *testing.T) {
	type doc struct {
		Other string   `yaml:"other"`
		D     Duration `yaml:"d"`
	}
	tests := []struct {
		name    string
		yml     string
		want    time.Duration
		wantErr []string
	}{
		{name: "plain", yml: "d: 30s", want: 30 * time.Second},
		{name: "compound", yml: "d: 1m30s", want: 90 * time.Second},
		{name: "millis", yml: "d: 250ms", want: 250 * time.Millisecond},
		{name: "double quoted", yml: `d: "250ms"`, want: 250 * time.Millisecond},
		{name: "single quoted", yml: `d: '2h'`, want: 2 * time.Hour},
		{name: "explicit str tag", yml: "d: !!str 5s", want: 5 * time.Second},
		{name: "null leaves zero", yml: "d: ~", want: 0},
		{name: "absent leaves zero", yml: "other: x", want: 0},
		{name: "alias", yml: "other: &t 7s\nd: *t", want: 7 * time.Second},

		{name: "yaml int", yml: "other: x\nd: 30", wantErr: []string{"line 2", `want a duration string such as "30s", got "30"`}},
		{name: "yaml zero int", yml: "d: 0", wantErr: []string{"line 1", "want a duration string"}},
		{name: "yaml negative int", yml: "d: -5", wantErr: []string{"want a duration string"}},
		{name: "yaml float", yml: "d: 1.5", wantErr: []string{"want a duration string"}},
		{name: "yaml bool", yml: "d: true", wantErr: []string{"want a duration string"}},
		{name: "sequence", yml: "d: [30s]", wantErr: []string{"line 1", "want a duration string"}},
		{name: "mapping", yml: "d: {s: 30}", wantErr: []string{"want a duration string"}},
		{name: "quoted bare number", yml: `d: "30"`, wantErr: []string{"line 1", `invalid duration "30"`}},
		{name: "negative", yml: "other: x\nd: -1s", wantErr: []string{"line 2", `invalid duration "-1s": must not be negative`}},
		{name: "garbage", yml: "d: abc", wantErr: []string{`invalid duration "abc"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d doc
			err := yaml.Unmarshal([]byte(tt.yml), &d)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("Unmarshal(%q) = %v, want error", tt.yml, d.D.D())
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Unmarshal(%q): %v", tt.yml, err)
			}
			if d.D.D() != tt.want {
				t.Errorf("Unmarshal(%q) = %v, want %v", tt.yml, d.D.D(), tt.want)
			}
		})
	}
}

func TestDurationMarshalJSON(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{30 * time.Second, `"30s"`},
		{90 * time.Second, `"1m30s"`},
		{250 * time.Millisecond, `"250ms"`},
		{time.Hour, `"1h0m0s"`},
		{0, `"0s"`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			b, err := json.Marshal(Duration(tt.d))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("json.Marshal(%v) = %s, want %s", tt.d, b, tt.want)
			}
			// The string form parses back to the same value.
			var s string
			if err := json.Unmarshal(b, &s); err != nil {
				t.Fatal(err)
			}
			back, err := ParseDuration(s)
			if err != nil || back.D() != tt.d {
				t.Errorf("ParseDuration(%q) = %v, %v; want %v", s, back.D(), err, tt.d)
			}
		})
	}
}

// The snapshot served on /debug/config shows durations as strings, including
// defaulted ones, both as struct fields and through pointers.
func TestConfigJSONShowsDurationStrings(t *testing.T) {
	c := mustParse(t, minimalYAML)
	b, err := json.Marshal(&Snapshot{Config: c, Generation: 1, Source: "test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"drainTimeout":"30s"`,
		`"readHeaderTimeout":"10s"`,
		`"idleTimeout":"1m0s"`,
		`"timeout":"15s"`,
		`"connectTimeout":"5s"`,
		`"idleConnTimeout":"1m30s"`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("snapshot JSON lacks %s:\n%s", want, b)
		}
	}
}
