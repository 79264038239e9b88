// Package testutil holds what rdmabind's tests share: running the test
// binary again as a helper process (as another user, too, or in the second
// guest) and talking to it line by line (StartProc, StartDialogue);
// running a whole test binary, or one test, again in private network and
// mount namespaces (ReexecInPrivateNS, RunInPrivateNS, InitPrivateNS); a
// network namespace of a test's own (NewNetNS); counting open fds; and
// skipping with a reason where root, BPF or an RDMA device is missing (but
// failing instead of skipping inside the SoftRoCE guest, where they must be
// there).
package testutil
