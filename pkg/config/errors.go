package config

import (
	"fmt"
	"strings"
)

// FieldError is one problem at one place in the config, named by its field
// path, e.g. `routes[2].match.path.regex`.
type FieldError struct {
	Path   string
	Reason string
}

func (e FieldError) Error() string { return e.Path + ": " + e.Reason }

// Errors collects every problem found, so one run of `validate` lists them all.
type Errors []FieldError

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// errs accumulates FieldErrors while walking the config.
type errs struct{ list Errors }

func (e *errs) add(path, format string, args ...any) {
	e.list = append(e.list, FieldError{Path: path, Reason: fmt.Sprintf(format, args...)})
}

func (e *errs) err() error {
	if len(e.list) == 0 {
		return nil
	}
	return e.list
}

func idx(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }
