package classify

import (
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// IdempotentByDescriptor reports whether the proto descriptor of
// fullMethod ("/package.Service/Method", as gRPC interceptors receive it)
// declares idempotency_level IDEMPOTENT or NO_SIDE_EFFECTS. Methods whose
// descriptor is not registered in protoregistry.GlobalFiles (which every
// generated package registers itself in) are not idempotent. It looks the
// descriptor up on every call and keeps nothing, so callers that ask often
// cache the answer in state they bound themselves (the client pipeline
// keeps it per method). It is safe for concurrent use.
func IdempotentByDescriptor(fullMethod string) bool {
	return lookupIdempotent(protoregistry.GlobalFiles, fullMethod)
}

// lookupIdempotent finds fullMethod's descriptor in files.
func lookupIdempotent(files *protoregistry.Files, fullMethod string) bool {
	service, method, ok := SplitMethod(fullMethod)
	if !ok {
		return false
	}
	d, err := files.FindDescriptorByName(protoreflect.FullName(service))
	if err != nil {
		return false
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return false
	}
	md := sd.Methods().ByName(protoreflect.Name(method))
	if md == nil {
		return false
	}
	opts, ok := md.Options().(*descriptorpb.MethodOptions)
	if !ok {
		return false
	}
	switch opts.GetIdempotencyLevel() {
	case descriptorpb.MethodOptions_IDEMPOTENT, descriptorpb.MethodOptions_NO_SIDE_EFFECTS:
		return true
	default:
		return false
	}
}

// SplitMethod splits a full method name "/package.Service/Method" into
// "package.Service" and "Method". It reports false for a name of another
// shape.
func SplitMethod(fullMethod string) (service, method string, ok bool) {
	name, found := strings.CutPrefix(fullMethod, "/")
	if !found {
		return "", "", false
	}
	i := strings.LastIndexByte(name, '/')
	if i <= 0 || i == len(name)-1 {
		return "", "", false
	}
	return name[:i], name[i+1:], true
}
