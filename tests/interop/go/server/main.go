// Go reference server for libttrpc interop tests (containerd ttrpc 1.1.1).
//
// Implements service "husk.test.Echo" as specified in proto/test/echo.proto,
// with google.protobuf.BytesValue (wire-identical to husk.test.Bytes) as the
// request and reply type. Usage: ttrpc-go-server -socket PATH
// Prints "ready" on stdout once listening; exits on SIGTERM/SIGINT and
// removes the socket.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/gogo/protobuf/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const serviceName = "husk.test.Echo"

func decode(unmarshal func(interface{}) error) (*types.BytesValue, error) {
	req := &types.BytesValue{}
	if err := unmarshal(req); err != nil {
		return nil, err
	}
	return req, nil
}

func echo(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
	req, err := decode(unmarshal)
	if err != nil {
		return nil, err
	}
	return &types.BytesValue{Value: req.Value}, nil
}

func sleep(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
	req, err := decode(unmarshal)
	if err != nil {
		return nil, err
	}
	ms, err := strconv.ParseUint(string(req.Value), 10, 32)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "bad sleep duration %q", req.Value)
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return &types.BytesValue{Value: req.Value}, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

func fail(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
	req, err := decode(unmarshal)
	if err != nil {
		return nil, err
	}
	s := string(req.Value)
	codeStr, msg := s, ""
	if i := strings.IndexByte(s, ' '); i >= 0 {
		codeStr, msg = s[:i], s[i+1:]
	}
	code, err := strconv.ParseUint(codeStr, 10, 32)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "bad status code %q", codeStr)
	}
	return nil, status.Error(codes.Code(code), msg)
}

func metadata(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
	req, err := decode(unmarshal)
	if err != nil {
		return nil, err
	}
	key := string(req.Value)
	md, ok := ttrpc.GetMetadata(ctx)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no metadata key %q", key)
	}
	vals, ok := md[key]
	if !ok || len(vals) == 0 {
		return nil, status.Errorf(codes.NotFound, "no metadata key %q", key)
	}
	return &types.BytesValue{Value: []byte(strings.Join(vals, ","))}, nil
}

func block(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
	if _, err := decode(unmarshal); err != nil {
		return nil, err
	}
	<-ctx.Done()
	// "context deadline exceeded" with codes.DeadlineExceeded when the
	// request's timeout_nano expires.
	return nil, status.FromContextError(ctx.Err()).Err()
}

func size(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
	req, err := decode(unmarshal)
	if err != nil {
		return nil, err
	}
	return &types.BytesValue{Value: []byte(strconv.Itoa(len(req.Value)))}, nil
}

func main() {
	socket := flag.String("socket", "", "unix socket path to listen on (required)")
	flag.Parse()
	if *socket == "" {
		fmt.Fprintln(os.Stderr, "ttrpc-go-server: -socket PATH is required")
		os.Exit(2)
	}

	server, err := ttrpc.NewServer()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ttrpc-go-server: %v\n", err)
		os.Exit(1)
	}
	server.Register(serviceName, map[string]ttrpc.Method{
		"Echo":     echo,
		"Sleep":    sleep,
		"Fail":     fail,
		"Metadata": metadata,
		"Block":    block,
		"Size":     size,
	})

	_ = os.Remove(*socket)
	l, err := net.Listen("unix", *socket)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ttrpc-go-server: listen %s: %v\n", *socket, err)
		os.Exit(1)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	errc := make(chan error, 1)
	go func() { errc <- server.Serve(context.Background(), l) }()

	fmt.Println("ready")

	code := 0
	select {
	case <-sigs:
	case err := <-errc:
		if err != nil && err != ttrpc.ErrServerClosed {
			fmt.Fprintf(os.Stderr, "ttrpc-go-server: serve: %v\n", err)
			code = 1
		}
	}
	server.Close()
	os.Remove(*socket)
	os.Exit(code)
}
