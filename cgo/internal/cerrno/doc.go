// Package cerrno turns the error of a cgo two-value call into the errno the
// binding packages return (cgo/rdmacm and cgo/verbs), so that both report a
// failed C call the same way. It is internal to cgo/.
package cerrno
