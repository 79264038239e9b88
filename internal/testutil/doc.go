// Package testutil holds what rdmabind's tests share: running the test
// binary again as a helper process (as another user, too), counting open
// fds, and skipping with a reason where root, BPF or an RDMA device is
// missing (but failing instead of skipping inside the SoftRoCE guest, where
// they must be there).
package testutil
