// Drives husk-agent's containerd.task.v2.Task service with containerd's own
// generated Go client (runtime/v2/task, containerd 1.6 from Debian) over
// ttrpc, the way containerd's shim manager does: Create, State, Wait before
// Start, Start, stdio over the per-port sockets, Exec, Kill, Delete, and
// the error codes as containerd's errdefs sees them.
//
// Prints "PASS name" or "FAIL name: why" per step; exits 1 if any failed.
// Usage: agent-go-client -socket SOCK -bundle DIR1 -bundle2 DIR2
//
//	SOCK: the agent's --listen unix: path; stdio port P is SOCK_P.
//	DIR1, DIR2: bundles (config.json + rootfs) for "go1" and "go2".
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"syscall"
	"time"

	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/runtime/v2/task"
	"github.com/containerd/ttrpc"
	"github.com/gogo/protobuf/types"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// No upper bounds on how long things take (the machine is noisy): these
// only keep a hung agent from hanging the test forever.
const (
	callLimit = 60 * time.Second
	waitLimit = 120 * time.Second
)

const processTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/Process"

type runner struct {
	sock   string
	client task.TaskService
	failed int
}

func (r *runner) pass(name string) { fmt.Printf("PASS %s\n", name) }

func (r *runner) fail(name, format string, args ...interface{}) {
	r.failed++
	fmt.Printf("FAIL %s: %s\n", name, fmt.Sprintf(format, args...))
}

// check reports name as passed when err is nil, else as failed with err.
func (r *runner) check(name string, err error) bool {
	if err != nil {
		r.fail(name, "%v", err)
		return false
	}
	r.pass(name)
	return true
}

func callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), callLimit)
}

// reader collects everything one stdio socket delivers up to EOF.
type reader struct {
	done chan struct{}
	data []byte
	err  error
}

func (r *runner) openOutput(port int) (*reader, error) {
	path := fmt.Sprintf("%s_%d", r.sock, port)
	conn, err := net.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", path, err)
	}
	rd := &reader{done: make(chan struct{})}
	go func() {
		defer close(rd.done)
		defer conn.Close()
		rd.data, rd.err = io.ReadAll(conn)
	}()
	return rd, nil
}

// collect waits for EOF on rd and compares the bytes.
func collect(rd *reader, want string) error {
	select {
	case <-rd.done:
	case <-time.After(waitLimit):
		return errors.New("no EOF on the stdio socket")
	}
	if rd.err != nil {
		return fmt.Errorf("read: %w", rd.err)
	}
	if !bytes.Equal(rd.data, []byte(want)) {
		return fmt.Errorf("got %q, want %q", rd.data, want)
	}
	return nil
}

type waitResult struct {
	resp *task.WaitResponse
	err  error
}

// startWait issues Wait in its own goroutine, as containerd does before
// Start; the agent defers the reply until the process exited.
func (r *runner) startWait(id, execID string) chan waitResult {
	ch := make(chan waitResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		resp, err := r.client.Wait(ctx, &task.WaitRequest{ID: id, ExecID: execID})
		ch <- waitResult{resp, err}
	}()
	return ch
}

func checkWait(ch chan waitResult, want uint32) error {
	res := <-ch
	if res.err != nil {
		return res.err
	}
	if res.resp.ExitStatus != want {
		return fmt.Errorf("exit_status %d, want %d", res.resp.ExitStatus, want)
	}
	if res.resp.ExitedAt.IsZero() || res.resp.ExitedAt.Before(time.Unix(1, 0)) {
		return fmt.Errorf("exited_at %v is not set", res.resp.ExitedAt)
	}
	return nil
}

// pending tells whether a Wait has not answered yet.
func pending(ch chan waitResult) error {
	select {
	case res := <-ch:
		ch <- res
		if res.err != nil {
			return fmt.Errorf("Wait answered before Start: %v", res.err)
		}
		return fmt.Errorf("Wait answered before Start: exit_status %d", res.resp.ExitStatus)
	default:
		return nil
	}
}

func wantCode(err error, want codes.Code) error {
	if err == nil {
		return fmt.Errorf("succeeded, want %v", want)
	}
	if got := status.Code(err); got != want {
		return fmt.Errorf("code %v (%v), want %v", got, err, want)
	}
	return nil
}

func (r *runner) state(id, execID string) (*task.StateResponse, error) {
	ctx, cancel := callCtx()
	defer cancel()
	return r.client.State(ctx, &task.StateRequest{ID: id, ExecID: execID})
}

func (r *runner) stateIs(id string, want tasktypes.Status, pid uint32) error {
	st, err := r.state(id, "")
	if err != nil {
		return err
	}
	if st.Status != want {
		return fmt.Errorf("status %v, want %v", st.Status, want)
	}
	if st.ID != id {
		return fmt.Errorf("id %q, want %q", st.ID, id)
	}
	if pid != 0 && st.Pid != pid {
		return fmt.Errorf("pid %d, want %d", st.Pid, pid)
	}
	return nil
}

// lifecycle runs "go1": a short script with exact stdout, stderr and exit
// status, and the error mapping around it. It leaves go1 stopped.
func (r *runner) lifecycle(bundle string) (ok bool) {
	const id = "go1"
	ctx, cancel := callCtx()
	defer cancel()
	create, err := r.client.Create(ctx, &task.CreateTaskRequest{
		ID: id, Bundle: bundle, Stdout: "vsock://6001", Stderr: "vsock://6002",
	})
	if !r.check("create", err) {
		return false
	}
	if create.Pid == 0 {
		r.fail("create-pid", "pid 0")
		return false
	}
	r.pass("create-pid")
	pid := create.Pid
	r.check("state-created", r.stateIs(id, tasktypes.StatusCreated, pid))

	conn, err := r.client.Connect(ctx, &task.ConnectRequest{ID: id})
	if err == nil && conn.TaskPid != pid {
		err = fmt.Errorf("task_pid %d, want %d", conn.TaskPid, pid)
	}
	if err == nil && conn.Version == "" {
		err = errors.New("empty version")
	}
	r.check("connect", err)

	_, err = r.client.Create(ctx, &task.CreateTaskRequest{ID: id, Bundle: bundle})
	if err == nil || !errdefs.IsAlreadyExists(errdefs.FromGRPC(err)) {
		r.fail("create-duplicate-already-exists", "got %v", err)
	} else {
		r.pass("create-duplicate-already-exists")
	}

	wait := r.startWait(id, "")
	stdout, err := r.openOutput(6001)
	if !r.check("stdout-connect", err) {
		return false
	}
	stderr, err := r.openOutput(6002)
	if !r.check("stderr-connect", err) {
		return false
	}
	// The Wait is in flight on the same connection: the calls above and
	// below must still be answered, and it must not answer yet.
	r.check("state-with-wait-pending", r.stateIs(id, tasktypes.StatusCreated, pid))
	r.check("wait-pending-before-start", pending(wait))

	start, err := r.client.Start(ctx, &task.StartRequest{ID: id})
	if err == nil && start.Pid != pid {
		err = fmt.Errorf("pid %d, want %d", start.Pid, pid)
	}
	if !r.check("start", err) {
		return false
	}
	_, err = r.client.Start(ctx, &task.StartRequest{ID: id})
	r.check("start-twice-failed-precondition", wantCode(err, codes.FailedPrecondition))
	if err != nil && !errdefs.IsFailedPrecondition(errdefs.FromGRPC(err)) {
		r.fail("start-twice-errdefs", "errdefs does not see FailedPrecondition in %v", err)
	}

	r.check("stdout-bytes", collect(stdout, "out-42\n"))
	r.check("stderr-bytes", collect(stderr, "err\n"))
	r.check("wait-exit-3", checkWait(wait, 3))

	st, err := r.state(id, "")
	if err == nil && (st.Status != tasktypes.StatusStopped || st.ExitStatus != 3) {
		err = fmt.Errorf("status %v exit_status %d, want STOPPED 3", st.Status, st.ExitStatus)
	}
	if err == nil && st.ExitedAt.IsZero() {
		err = errors.New("exited_at not set")
	}
	r.check("state-stopped", err)

	// A Wait after the exit answers at once with the same status.
	r.check("wait-after-exit", checkWait(r.startWait(id, ""), 3))

	_, err = r.client.Kill(ctx, &task.KillRequest{ID: id, Signal: uint32(syscall.SIGKILL)})
	if err == nil || !errdefs.IsNotFound(errdefs.FromGRPC(err)) {
		r.fail("kill-exited-not-found", "got %v", err)
	} else {
		r.pass("kill-exited-not-found")
	}
	return true
}

func execSpec(args ...string) (*types.Any, error) {
	p := specs.Process{
		Args: args,
		Env:  []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		Cwd:  "/",
		User: specs.User{UID: 0, GID: 0},
	}
	b, err := json.Marshal(&p)
	if err != nil {
		return nil, err
	}
	return &types.Any{TypeUrl: processTypeURL, Value: b}, nil
}

// longRunning runs "go2" (sleep 1000): Pids, Exec with output and exit
// code, Delete of the exec, Kill, Wait and Delete of the container.
func (r *runner) longRunning(bundle string) {
	const id = "go2"
	ctx, cancel := callCtx()
	defer cancel()
	create, err := r.client.Create(ctx, &task.CreateTaskRequest{ID: id, Bundle: bundle})
	if !r.check("go2-create", err) {
		return
	}
	wait := r.startWait(id, "")
	if _, err := r.client.Start(ctx, &task.StartRequest{ID: id}); !r.check("go2-start", err) {
		return
	}
	r.check("go2-state-running", r.stateIs(id, tasktypes.StatusRunning, create.Pid))

	pids, err := r.client.Pids(ctx, &task.PidsRequest{ID: id})
	if err == nil {
		var got []uint32
		found := false
		for _, p := range pids.Processes {
			got = append(got, p.Pid)
			found = found || p.Pid == create.Pid
		}
		sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
		if !found {
			err = fmt.Errorf("pids %v lack the init pid %d", got, create.Pid)
		}
	}
	r.check("go2-pids", err)

	spec, err := execSpec("sh", "-c", "echo exec-$(hostname); exit 5")
	if !r.check("exec-spec", err) {
		return
	}
	_, err = r.client.Exec(ctx, &task.ExecProcessRequest{
		ID: id, ExecID: "e1", Stdout: "vsock://6011", Spec: spec,
	})
	if r.check("exec", err) {
		_, err = r.client.Exec(ctx, &task.ExecProcessRequest{
			ID: id, ExecID: "e1", Spec: spec,
		})
		r.check("exec-duplicate-already-exists", wantCode(err, codes.AlreadyExists))
		r.execProcess(ctx, id)
	}

	_, err = r.client.Delete(ctx, &task.DeleteRequest{ID: id})
	r.check("delete-running-failed-precondition", wantCode(err, codes.FailedPrecondition))

	_, err = r.client.Kill(ctx, &task.KillRequest{ID: id, Signal: uint32(syscall.SIGKILL)})
	if !r.check("go2-kill", err) {
		return
	}
	r.check("go2-wait-137", checkWait(wait, 137))
	del, err := r.client.Delete(ctx, &task.DeleteRequest{ID: id})
	if err == nil && (del.ExitStatus != 137 || del.Pid != create.Pid) {
		err = fmt.Errorf("pid %d exit_status %d, want %d 137", del.Pid, del.ExitStatus, create.Pid)
	}
	r.check("go2-delete", err)
	_, err = r.state(id, "")
	if err == nil || !errdefs.IsNotFound(errdefs.FromGRPC(err)) {
		r.fail("go2-gone", "State after Delete: %v", err)
	} else {
		r.pass("go2-gone")
	}
}

func (r *runner) execProcess(ctx context.Context, id string) {
	st, err := r.state(id, "e1")
	if err == nil && (st.Status != tasktypes.StatusCreated || st.ExecID != "e1") {
		err = fmt.Errorf("status %v exec_id %q, want CREATED e1", st.Status, st.ExecID)
	}
	r.check("exec-state-created", err)
	wait := r.startWait(id, "e1")
	out, err := r.openOutput(6011)
	if !r.check("exec-stdout-connect", err) {
		return
	}
	start, err := r.client.Start(ctx, &task.StartRequest{ID: id, ExecID: "e1"})
	if err == nil && start.Pid == 0 {
		err = errors.New("pid 0")
	}
	if !r.check("exec-start", err) {
		return
	}
	// The hostname shows the exec joined the container's UTS namespace.
	r.check("exec-stdout-bytes", collect(out, "exec-husk-test\n"))
	r.check("exec-wait-5", checkWait(wait, 5))
	del, err := r.client.Delete(ctx, &task.DeleteRequest{ID: id, ExecID: "e1"})
	if err == nil && (del.ExitStatus != 5 || del.Pid != start.Pid) {
		err = fmt.Errorf("pid %d exit_status %d, want %d 5", del.Pid, del.ExitStatus, start.Pid)
	}
	r.check("exec-delete", err)
	_, err = r.state(id, "e1")
	if err == nil || !errdefs.IsNotFound(errdefs.FromGRPC(err)) {
		r.fail("exec-gone", "State after Delete: %v", err)
	} else {
		r.pass("exec-gone")
	}
}

func main() {
	sock := flag.String("socket", "", "the agent's unix socket")
	bundle1 := flag.String("bundle", "", "bundle directory for go1")
	bundle2 := flag.String("bundle2", "", "bundle directory for go2")
	flag.Parse()
	if *sock == "" || *bundle1 == "" || *bundle2 == "" {
		fmt.Fprintln(os.Stderr, "usage: agent-go-client -socket SOCK -bundle DIR1 -bundle2 DIR2")
		os.Exit(2)
	}
	conn, err := net.Dial("unix", *sock)
	if err != nil {
		fmt.Printf("FAIL connect: %v\n", err)
		os.Exit(1)
	}
	tc := ttrpc.NewClient(conn)
	defer tc.Close()
	r := &runner{sock: *sock, client: task.NewTaskClient(tc)}

	_, err = r.state("no-such-container", "")
	if err == nil || !errdefs.IsNotFound(errdefs.FromGRPC(err)) {
		r.fail("state-unknown-not-found", "got %v", err)
	} else {
		r.pass("state-unknown-not-found")
	}

	ok := r.lifecycle(*bundle1)
	r.longRunning(*bundle2)

	ctx, cancel := callCtx()
	defer cancel()
	_, err = r.client.Checkpoint(ctx, &task.CheckpointTaskRequest{ID: "go1", Path: "/tmp/x"})
	r.check("checkpoint-unimplemented", wantCode(err, codes.Unimplemented))
	_, err = r.client.Create(ctx, &task.CreateTaskRequest{ID: "go3", Bundle: "relative/dir"})
	r.check("create-relative-bundle-invalid-argument", wantCode(err, codes.InvalidArgument))

	if ok {
		del, err := r.client.Delete(ctx, &task.DeleteRequest{ID: "go1"})
		if err == nil && del.ExitStatus != 3 {
			err = fmt.Errorf("exit_status %d, want 3", del.ExitStatus)
		}
		if err == nil && del.ExitedAt.IsZero() {
			err = errors.New("exited_at not set")
		}
		r.check("delete-exit-3", err)
	}
	if r.failed > 0 {
		fmt.Printf("%d failed\n", r.failed)
		os.Exit(1)
	}
}
