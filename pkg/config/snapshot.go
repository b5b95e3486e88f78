package config

import "time"

// Snapshot is one validated config, published as a whole. Consumers must
// treat it as read-only: it is shared by every request that started on it.
type Snapshot struct {
	Config     *Config   `json:"config"`
	Generation uint64    `json:"generation"`
	Source     string    `json:"source"`
	LoadedAt   time.Time `json:"loadedAt"`
	// Status is the source's report on its inputs (for Kubernetes: the
	// state of every annotated Service), shown on /debug/config.
	Status any `json:"status,omitempty"`
}
