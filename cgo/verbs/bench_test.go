package verbs

import (
	"os"
	"testing"
)

// BenchmarkPollEmpty is one ibv_poll_cq of an empty CQ through cgo: the
// cost of a call into C, which every Send and Recv pays a few times. In the
// SoftRoCE guest: go test -run '^$' -bench PollEmpty -exec "$PWD/ci/softroce/run --" ./cgo/verbs/
func BenchmarkPollEmpty(b *testing.B) {
	if _, err := os.Stat("/dev/infiniband/rdma_cm"); err != nil {
		b.Skip("no RDMA device")
	}
	ctx, closeID, err := deviceContext()
	if err != nil {
		b.Skip(err)
	}
	defer closeID()
	cq, err := ctx.NewCQ(16)
	if err != nil {
		b.Fatal(err)
	}
	defer cq.Close()
	wcs := make([]WC, 16)
	b.ResetTimer()
	for range b.N {
		if _, err := cq.Poll(wcs); err != nil {
			b.Fatal(err)
		}
	}
}
