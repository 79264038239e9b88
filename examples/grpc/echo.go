package main

import (
	"context"
	"io"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rdmabind/rdmabind"
)

// The echo service, without generated code: its messages are raw bytes
// (rawCodec), its methods a unary Echo and a bidirectional Stream that
// answers every message with itself.

// rawCodec marshals *[]byte as itself.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	p := v.(*[]byte)
	*p = append((*p)[:0], data...)
	return nil
}
func (rawCodec) Name() string { return "rdmabind-raw" }

const (
	unaryMethod  = "/rdmabind.Echo/Echo"
	streamMethod = "/rdmabind.Echo/Stream"
)

var echoService = grpc.ServiceDesc{
	ServiceName: "rdmabind.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			return &in, nil
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Stream",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(_ any, s grpc.ServerStream) error {
			for {
				var m []byte
				if err := s.RecvMsg(&m); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
				if err := s.SendMsg(&m); err != nil {
					return err
				}
			}
		},
	}},
}

// newServer is a gRPC server of the echo service.
func newServer() *grpc.Server {
	s := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}))
	s.RegisterService(&echoService, struct{}{})
	return s
}

// listen listens on addr over rdmabind.
func listen(addr string) (net.Listener, error) {
	return rdmabind.Listen("rdma", addr)
}

// dial is a gRPC client connection to addr whose transport dials with an
// rdmabind.Dialer ("tcp" there means the same address over RDMA).
func dial(addr string) (*grpc.ClientConn, error) {
	d := &rdmabind.Dialer{}
	return grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", a)
		}),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
}

// echoUnary calls Echo with m and returns the answer.
func echoUnary(ctx context.Context, cc *grpc.ClientConn, m []byte) ([]byte, error) {
	var out []byte
	err := cc.Invoke(ctx, unaryMethod, &m, &out)
	return out, err
}

// echoStream sends msgs on one Stream call while it receives the answers,
// and returns them.
func echoStream(ctx context.Context, cc *grpc.ClientConn, msgs [][]byte) ([][]byte, error) {
	cs, err := cc.NewStream(ctx, &echoService.Streams[0], streamMethod)
	if err != nil {
		return nil, err
	}
	sent := make(chan error, 1)
	go func() {
		for i := range msgs {
			if err := cs.SendMsg(&msgs[i]); err != nil {
				sent <- err
				return
			}
		}
		sent <- cs.CloseSend()
	}()
	var got [][]byte
	for {
		var m []byte
		err := cs.RecvMsg(&m)
		if err == io.EOF {
			break
		}
		if err != nil {
			return got, err
		}
		got = append(got, m)
	}
	return got, <-sent
}
