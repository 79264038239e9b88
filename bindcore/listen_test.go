//go:build linux

package bindcore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rdmabind/rdmabind/bindcore/wsa"
)

// Listen and its companions on sockets that cannot listen, with the spec's
// codes; this runs everywhere (no RDMA needed to be refused).
func TestListenNotListening(t *testing.T) {
	b := openBinder(t)
	s, _ := b.Socket(AFInet)
	wantCode(t, s.Listen(5), wsa.WSAEINVAL) // not bound
	_, err := s.ListenState()
	wantCode(t, err, wsa.WSAEINVAL)
	_, err = s.AcceptTCP(context.Background())
	wantCode(t, err, wsa.WSAEINVAL)
	_, err = s.AcceptRDMA(context.Background())
	wantCode(t, err, wsa.WSAEINVAL)
	if on, why := s.Steering(); on || !errors.Is(why, wsa.ErrInvalid) {
		t.Fatalf("Steering of an unbound socket: %v %v", on, why)
	}
	// Designated of a socket that is not listening must not block a
	// `<-s.Designated()` for ever (it was a nil channel once); WaitDesignated
	// says why.
	select {
	case <-s.Designated():
	case <-time.After(time.Second):
		t.Fatal("<-Designated() of an unbound socket blocks")
	}
	wantCode(t, s.WaitDesignated(context.Background()), wsa.WSAEINVAL)
	s.Close()
	wantCode(t, s.Listen(5), wsa.WSAENOTSOCK)
	wantCode(t, s.WaitDesignated(context.Background()), wsa.WSAENOTSOCK)
	<-s.Designated()
	_, err = s.AcceptTCP(context.Background())
	wantCode(t, err, wsa.WSAENOTSOCK)
	var nilSock *Socket
	wantCode(t, nilSock.Listen(1), wsa.WSAENOTSOCK)
	wantCode(t, (&Socket{}).Listen(1), wsa.WSAENOTSOCK)
}
