// Go reference client for libttrpc interop tests (containerd ttrpc 1.1.1).
//
// Connects to any server implementing proto/test/echo.proto on a unix socket
// and runs the scenarios below on ONE connection, printing "PASS name" or
// "FAIL name: reason" per scenario and a summary line. Exit 0 iff all pass.
// Usage: ttrpc-go-client -socket PATH [-only NAME]
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/gogo/protobuf/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	service   = "husk.test.Echo"
	maxFrame  = 4 << 20
	bigSize   = maxFrame - 1024
	overSize  = maxFrame + 16
	callLimit = 10 * time.Second
)

// serverTimeoutKey, when present in a call's context, makes the client
// interceptor overwrite the Request's timeout_nano, so that the server's
// own deadline handling can be tested independently of the client's.
type serverTimeoutKey struct{}

func interceptor(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response, info *ttrpc.UnaryClientInfo, invoker ttrpc.Invoker) error {
	if d, ok := ctx.Value(serverTimeoutKey{}).(time.Duration); ok {
		req.TimeoutNano = int64(d)
	}
	return invoker(ctx, req, resp)
}

type tester struct {
	client *ttrpc.Client
}

func (t *tester) call(ctx context.Context, method string, in []byte) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, callLimit)
		defer cancel()
	}
	var out types.BytesValue
	if err := t.client.Call(ctx, service, method, &types.BytesValue{Value: in}, &out); err != nil {
		return nil, err
	}
	return out.Value, nil
}

func (t *tester) echoCheck(ctx context.Context, in []byte) error {
	out, err := t.call(ctx, "Echo", in)
	if err != nil {
		return fmt.Errorf("Echo(%d bytes): %v", len(in), err)
	}
	if !bytes.Equal(out, in) {
		return fmt.Errorf("Echo(%d bytes): reply differs (%d bytes)", len(in), len(out))
	}
	return nil
}

func expectCode(err error, want codes.Code, wantMsg *string) error {
	if err == nil {
		return fmt.Errorf("no error, want %v", want)
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("non-status error %q (%T), want %v", err, err, want)
	}
	if st.Code() != want {
		return fmt.Errorf("code %v (%q), want %v", st.Code(), st.Message(), want)
	}
	if wantMsg != nil && st.Message() != *wantMsg {
		return fmt.Errorf("message %q, want %q", st.Message(), *wantMsg)
	}
	return nil
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed ^ byte(i>>8)
	}
	return b
}

func (t *tester) scEcho(ctx context.Context) error {
	return t.echoCheck(ctx, []byte("hello, ttrpc \x00\x01\xff"))
}

func (t *tester) scEmpty(ctx context.Context) error {
	out, err := t.call(ctx, "Echo", nil)
	if err != nil {
		return err
	}
	if len(out) != 0 {
		return fmt.Errorf("reply has %d bytes, want 0", len(out))
	}
	return nil
}

func (t *tester) scOutOfOrder(ctx context.Context) error {
	type result struct {
		name string
		err  error
	}
	var (
		mu    sync.Mutex
		order []string
		wg    sync.WaitGroup
		errs  = make(chan result, 3)
	)
	run := func(name, method, arg string) {
		defer wg.Done()
		out, err := t.call(ctx, method, []byte(arg))
		if err == nil && string(out) != arg {
			err = fmt.Errorf("reply %q, want %q", out, arg)
		}
		mu.Lock()
		order = append(order, name)
		mu.Unlock()
		errs <- result{name, err}
	}
	wg.Add(1)
	go run("sleep300", "Sleep", "300")
	time.Sleep(20 * time.Millisecond) // make sure the long call is sent first
	wg.Add(2)
	go run("sleep10", "Sleep", "10")
	go run("echo", "Echo", "ooo")
	wg.Wait()
	close(errs)
	for r := range errs {
		if r.err != nil {
			return fmt.Errorf("%s: %v", r.name, r.err)
		}
	}
	if len(order) != 3 || order[2] != "sleep300" {
		return fmt.Errorf("completion order %v, want sleep300 last", order)
	}
	return nil
}

func (t *tester) scConcurrent(ctx context.Context) error {
	const workers, per = 64, 20
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				in := []byte(fmt.Sprintf("worker-%02d-call-%02d-%s", w, i, bytes.Repeat([]byte{byte('a' + w%26)}, (w*per+i)%97)))
				if err := t.echoCheck(ctx, in); err != nil {
					once.Do(func() { first = fmt.Errorf("worker %d call %d: %v", w, i, err) })
					return
				}
			}
		}(w)
	}
	wg.Wait()
	return first
}

func (t *tester) scErrorCodes(ctx context.Context) error {
	for _, c := range []codes.Code{codes.NotFound, codes.InvalidArgument, codes.FailedPrecondition,
		codes.Unimplemented, codes.Internal, codes.AlreadyExists} {
		msg := fmt.Sprintf("some message %d", int(c))
		_, err := t.call(ctx, "Fail", []byte(fmt.Sprintf("%d %s", int(c), msg)))
		if e := expectCode(err, c, &msg); e != nil {
			return fmt.Errorf("Fail(%d): %v", int(c), e)
		}
	}
	return nil
}

func (t *tester) scUnknownMethod(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, callLimit)
	defer cancel()
	var out types.BytesValue
	err := t.client.Call(cctx, service, "NoSuchMethod", &types.BytesValue{Value: []byte("x")}, &out)
	if e := expectCode(err, codes.Unimplemented, nil); e != nil {
		return fmt.Errorf("%s/NoSuchMethod: %v", service, e)
	}
	err = t.client.Call(cctx, "husk.test.Nope", "Echo", &types.BytesValue{Value: []byte("x")}, &out)
	if e := expectCode(err, codes.Unimplemented, nil); e != nil {
		return fmt.Errorf("husk.test.Nope/Echo: %v", e)
	}
	return nil
}

func (t *tester) scMetadata(ctx context.Context) error {
	const ns = "containerd-namespace-ttrpc"
	mctx := ttrpc.WithMetadata(ctx, ttrpc.MD{ns: {"k8s.io"}, "x-multi": {"a", "b"}})
	out, err := t.call(mctx, "Metadata", []byte(ns))
	if err != nil {
		return fmt.Errorf("Metadata(%s): %v", ns, err)
	}
	if string(out) != "k8s.io" {
		return fmt.Errorf("Metadata(%s) = %q, want %q", ns, out, "k8s.io")
	}
	out, err = t.call(mctx, "Metadata", []byte("x-multi"))
	if err != nil {
		return fmt.Errorf("Metadata(x-multi): %v", err)
	}
	if string(out) != "a,b" {
		return fmt.Errorf("Metadata(x-multi) = %q, want %q", out, "a,b")
	}
	_, err = t.call(mctx, "Metadata", []byte("x-absent"))
	if e := expectCode(err, codes.NotFound, nil); e != nil {
		return fmt.Errorf("Metadata(x-absent): %v", e)
	}
	_, err = t.call(ctx, "Metadata", []byte(ns))
	if e := expectCode(err, codes.NotFound, nil); e != nil {
		return fmt.Errorf("Metadata(%s) without metadata: %v", ns, e)
	}
	return nil
}

func (t *tester) scBigPayload(ctx context.Context) error {
	in := pattern(bigSize, 0x5a)
	out, err := t.call(ctx, "Size", in)
	if err != nil {
		return fmt.Errorf("Size(%d bytes): %v", bigSize, err)
	}
	if string(out) != strconv.Itoa(bigSize) {
		return fmt.Errorf("Size(%d bytes) = %q", bigSize, out)
	}
	return t.echoCheck(ctx, in)
}

func (t *tester) scOversized(ctx context.Context) error {
	// ttrpc 1.1.1's Go client does not check the size before sending, so
	// this exercises the server: it must discard the frame and answer
	// RESOURCE_EXHAUSTED on the same stream id, keeping the connection.
	_, err := t.call(ctx, "Echo", pattern(overSize, 0xa5))
	if e := expectCode(err, codes.ResourceExhausted, nil); e != nil {
		return fmt.Errorf("Echo(%d bytes): %v", overSize, e)
	}
	if err := t.echoCheck(ctx, []byte("after oversized")); err != nil {
		return fmt.Errorf("connection unusable afterwards: %v", err)
	}
	return nil
}

func (t *tester) scDeadline(ctx context.Context) error {
	// 1. Client-side deadline of 200 ms (sent as timeout_nano). Whichever
	//    fires first, the call must end with DEADLINE_EXCEEDED quickly.
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err := t.call(dctx, "Block", nil)
	cancel()
	el := time.Since(start)
	if err == nil {
		return fmt.Errorf("Block returned no error")
	}
	if !errors.Is(err, context.DeadlineExceeded) && status.Code(err) != codes.DeadlineExceeded {
		return fmt.Errorf("Block: %v (%T), want deadline exceeded", err, err)
	}
	if el > 2*time.Second {
		return fmt.Errorf("Block took %v", el)
	}
	if err := t.echoCheck(ctx, []byte("after deadline")); err != nil {
		return fmt.Errorf("after client deadline: %v", err)
	}

	// 2. Server-side: timeout_nano = 200 ms but the client waits up to 2 s;
	//    the server itself must answer DEADLINE_EXCEEDED.
	start = time.Now()
	sctx, cancel := context.WithTimeout(context.WithValue(ctx, serverTimeoutKey{}, 200*time.Millisecond), 2*time.Second)
	_, err = t.call(sctx, "Block", nil)
	cancel()
	el = time.Since(start)
	if e := expectCode(err, codes.DeadlineExceeded, nil); e != nil {
		return fmt.Errorf("Block with timeout_nano=200ms (server deadline): %v after %v", e, el)
	}
	if el < 150*time.Millisecond {
		return fmt.Errorf("server deadline fired too early: %v", el)
	}
	if err := t.echoCheck(ctx, []byte("after server deadline")); err != nil {
		return fmt.Errorf("after server deadline: %v", err)
	}
	return nil
}

func (t *tester) scAfterAll(ctx context.Context) error {
	return t.echoCheck(ctx, []byte("still alive"))
}

func main() {
	socket := flag.String("socket", "", "unix socket path of the server (required)")
	only := flag.String("only", "", "run only this scenario")
	flag.Parse()
	if *socket == "" {
		fmt.Fprintln(os.Stderr, "ttrpc-go-client: -socket PATH is required")
		os.Exit(2)
	}

	conn, err := net.Dial("unix", *socket)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ttrpc-go-client: dial %s: %v\n", *socket, err)
		os.Exit(1)
	}
	client := ttrpc.NewClient(conn, ttrpc.WithUnaryClientInterceptor(interceptor))
	defer client.Close()
	t := &tester{client: client}

	scenarios := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"echo", t.scEcho},
		{"empty", t.scEmpty},
		{"out-of-order", t.scOutOfOrder},
		{"concurrent", t.scConcurrent},
		{"error-codes", t.scErrorCodes},
		{"unknown-method", t.scUnknownMethod},
		{"metadata", t.scMetadata},
		{"big-payload", t.scBigPayload},
		{"oversized", t.scOversized},
		{"deadline", t.scDeadline},
		{"after-all", t.scAfterAll},
	}

	passed, failed, ran := 0, 0, 0
	for _, sc := range scenarios {
		if *only != "" && sc.name != *only {
			continue
		}
		ran++
		if err := sc.fn(context.Background()); err != nil {
			fmt.Printf("FAIL %s: %v\n", sc.name, err)
			failed++
		} else {
			fmt.Printf("PASS %s\n", sc.name)
			passed++
		}
	}
	if ran == 0 {
		fmt.Fprintf(os.Stderr, "ttrpc-go-client: no scenario named %q\n", *only)
		os.Exit(2)
	}
	fmt.Printf("go-client: %d passed, %d failed\n", passed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}
