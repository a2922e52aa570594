package server

import (
	"errors"

	resilience "github.com/engineeringlabs/grpc-resilience"
)

// problems collects the FieldErrors of a Validate method.
type problems []error

// add records that field holds value, which is invalid for reason.
func (p *problems) add(field string, value any, reason string) {
	*p = append(*p, &resilience.FieldError{Field: field, Value: value, Reason: reason})
}

// nest records the FieldErrors of err, a part's Validate result, under
// prefix, the field that holds the part.
func (p *problems) nest(prefix string, err error) {
	for _, fe := range resilience.FieldErrors(err) {
		*p = append(*p, fe.Prefix(prefix))
	}
}

// err joins the problems, or returns nil when there are none.
func (p problems) err() error { return errors.Join(p...) }
