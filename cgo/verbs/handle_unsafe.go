package verbs

import "unsafe"

// handle is a C object's pointer (struct ibv_pd *, ...): C memory, which the
// Go garbage collector does not manage; nil once the object is freed.
type handle = unsafe.Pointer
