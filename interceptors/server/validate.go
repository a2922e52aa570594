package server

import (
	"context"
	"errors"
	"maps"
	"slices"

	"google.golang.org/grpc/metadata"

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

// partitioning records the problems of the settings that split calls into
// partitions, which the bulkhead and the rate limit share.
func (p *problems) partitioning(by Partition, header string, keyFunc func(context.Context, string) string, maxPartitions int) {
	if by > PartitionByPeer {
		p.add("PartitionBy", by, "must be one of none, method, header, func, peer")
	}
	switch {
	case by == PartitionByHeader && header == "":
		p.add("Header", header, "must be set for PartitionByHeader")
	case by != PartitionByHeader && header != "":
		p.add("Header", header, "set but PartitionBy is "+by.String())
	}
	switch {
	case by == PartitionByFunc && keyFunc == nil:
		p.add("KeyFunc", nil, "must be set for PartitionByFunc")
	case by != PartitionByFunc && keyFunc != nil:
		p.add("KeyFunc", "set", "set but PartitionBy is "+by.String())
	}
	if maxPartitions < 0 {
		p.add("MaxPartitions", maxPartitions, "must not be negative (0 means DefaultMaxPartitions)")
	}
}

// partitionKey returns the partition key of a call under by, "" for the
// calls that share one partition: those without the header, and those
// whose header value is longer than MaxHeaderKeyLength (which would let a
// caller make the server keep that many bytes per key).
func partitionKey(ctx context.Context, fullMethod string, by Partition, header string, keyFunc func(context.Context, string) string) string {
	switch by {
	case PartitionByMethod:
		return fullMethod
	case PartitionByHeader:
		if v := metadata.ValueFromIncomingContext(ctx, header); len(v) > 0 && len(v[0]) <= MaxHeaderKeyLength {
			return v[0]
		}
	case PartitionByFunc:
		return keyFunc(ctx, fullMethod)
	case PartitionByPeer:
		return peerKey(ctx)
	}
	return ""
}

// checkMethods records the problems of a map keyed by method patterns,
// under "Methods[key]": keys methodPattern rejects, two keys that name the
// same method or service, and each value's own problems, in the order of
// the keys.
func checkMethods[V any](p *problems, methods map[string]V, validate func(V) error) {
	seen := make(map[string]string, len(methods))
	for _, m := range slices.Sorted(maps.Keys(methods)) {
		field := "Methods[" + m + "]"
		canon, ok := methodPattern(m)
		if !ok {
			p.add(field, m, patternReason)
		} else if other, dup := seen[canon]; dup {
			p.add(field, m, "names the same service as Methods["+other+"]")
		} else {
			seen[canon] = m
		}
		p.nest(field, validate(methods[m]))
	}
}
