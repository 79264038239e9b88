// Package cmraw passes the raw rdma_cm_id pointer of an rdmacm.ID to
// cgo/verbs, which needs it for rdma_create_qp, rdma_destroy_qp and
// id->verbs, without either package exporting a C type. It is internal to
// cgo/: nothing outside the two binding packages can reach it.
//
// cgo/rdmacm sets WithID in its init (cgo builds only); cgo/verbs calls it.
package cmraw
