/*
   husk's own CRI tests, compiled into containerd's integration suite by
   tests/cri/build-suite.sh (package integration: its helpers and its
   runtimeService). They run against every handler, runc first as the
   reference: what runc passes, husk must pass.
*/

package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport/spdy"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func huskMount(host, ctr string, ro bool) ContainerOpts {
	return func(c *runtime.ContainerConfig) {
		c.Mounts = append(c.Mounts, &runtime.Mount{HostPath: host, ContainerPath: ctr, Readonly: ro})
	}
}

func huskDNS(p *runtime.PodSandboxConfig) {
	p.DnsConfig = &runtime.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"husk.svc.local"}}
}

// A sandbox and its cleanup.
func huskPod(t *testing.T, name string, opts ...PodSandboxOpts) (string, *runtime.PodSandboxConfig) {
	cfg := PodSandboxConfig(name, "husk", opts...)
	sb, err := runtimeService.RunPodSandbox(cfg, *runtimeHandler)
	require.NoError(t, err)
	t.Cleanup(func() {
		assert.NoError(t, runtimeService.StopPodSandbox(sb))
		assert.NoError(t, runtimeService.RemovePodSandbox(sb))
	})
	return sb, cfg
}

// A started container running `sh -c script` (default: sleep).
func huskStart(t *testing.T, sb string, sbCfg *runtime.PodSandboxConfig, name, script string, opts ...ContainerOpts) string {
	img := GetImage(BusyBox)
	EnsureImageExists(t, img)
	if script == "" {
		script = "sleep 1000"
	}
	opts = append(opts, WithCommand("sh", "-c", script))
	cn, err := runtimeService.CreateContainer(sb, ContainerConfig(name, img, opts...), sbCfg)
	require.NoError(t, err)
	require.NoError(t, runtimeService.StartContainer(cn))
	return cn
}

func huskExec(t *testing.T, cn string, script string) (string, error) {
	out, errOut, err := runtimeService.ExecSync(cn, []string{"sh", "-c", script}, 30*time.Second)
	if err != nil {
		return string(out) + string(errOut), err
	}
	return strings.TrimSpace(string(out)), nil
}

// Host mounts: a directory two containers share (emptyDir), a hostPath
// written on both sides, a read-only mount refusing writes, a ConfigMap's
// atomic update reaching a running container, the termination log read
// on the host, and the pod's hostname and DNS files.
func TestHuskPodVolumes(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"shared", "host", "ro", "cm/..v1"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, d), 0755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "host", "from-host"), []byte("host-data\n"), 0644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ro", "keep"), []byte("keep\n"), 0644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cm/..v1/key"), []byte("one\n"), 0644))
	require.NoError(t, os.Symlink("..v1", filepath.Join(dir, "cm/..data")))
	require.NoError(t, os.Symlink("..data/key", filepath.Join(dir, "cm/key")))
	term := filepath.Join(dir, "termination-log")
	require.NoError(t, os.WriteFile(term, nil, 0644))

	sb, sbCfg := huskPod(t, "volumes", WithPodHostname("husk-pod"), huskDNS)
	a := huskStart(t, sb, sbCfg, "a", "",
		huskMount(filepath.Join(dir, "shared"), "/shared", false),
		huskMount(filepath.Join(dir, "host"), "/host", false),
		huskMount(filepath.Join(dir, "ro"), "/ro", true),
		huskMount(filepath.Join(dir, "cm"), "/cm", true),
		huskMount(term, "/dev/termination-log", false))
	b := huskStart(t, sb, sbCfg, "b", "", huskMount(filepath.Join(dir, "shared"), "/shared", false))

	t.Log("emptyDir: what one container writes, the other reads")
	_, err := huskExec(t, a, "echo from-a >/shared/x")
	require.NoError(t, err)
	out, err := huskExec(t, b, "cat /shared/x")
	require.NoError(t, err)
	assert.Equal(t, "from-a", out)

	t.Log("hostPath: writes visible on both sides")
	out, err = huskExec(t, a, "cat /host/from-host; echo from-guest >/host/from-guest")
	require.NoError(t, err)
	assert.Equal(t, "host-data", out)
	data, err := os.ReadFile(filepath.Join(dir, "host", "from-guest"))
	require.NoError(t, err)
	assert.Equal(t, "from-guest\n", string(data))

	t.Log("read-only: writes refused")
	out, err = huskExec(t, a, "echo x >/ro/new 2>&1 && echo WROTE; echo x >>/ro/keep 2>&1 && echo WROTE; cat /ro/keep")
	require.NoError(t, err)
	assert.NotContains(t, out, "WROTE")
	assert.Contains(t, out, "keep")
	_, statErr := os.Stat(filepath.Join(dir, "ro", "new"))
	assert.True(t, os.IsNotExist(statErr), "a file appeared in the read-only directory")

	t.Log("ConfigMap: the atomic ..data swap reaches the running container")
	out, err = huskExec(t, a, "cat /cm/key")
	require.NoError(t, err)
	assert.Equal(t, "one", out)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "cm/..v2"), 0755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cm/..v2/key"), []byte("two\n"), 0644))
	require.NoError(t, os.Symlink("..v2", filepath.Join(dir, "cm/..data_tmp")))
	require.NoError(t, os.Rename(filepath.Join(dir, "cm/..data_tmp"), filepath.Join(dir, "cm/..data")))
	require.NoError(t, Eventually(func() (bool, error) {
		out, err := huskExec(t, a, "cat /cm/key")
		return err == nil && out == "two", nil
	}, 500*time.Millisecond, 15*time.Second))

	t.Log("termination log: written in the container, read on the host")
	_, err = huskExec(t, a, "echo goodbye >/dev/termination-log")
	require.NoError(t, err)
	data, err = os.ReadFile(term)
	require.NoError(t, err)
	assert.Equal(t, "goodbye\n", string(data))

	t.Log("hostname, resolv.conf and hosts from the pod's config")
	out, err = huskExec(t, a, "cat /etc/hostname; hostname; cat /etc/resolv.conf; cat /etc/hosts")
	require.NoError(t, err)
	assert.Contains(t, out, "husk-pod\nhusk-pod\n")
	assert.Contains(t, out, "nameserver 10.96.0.10")
	assert.Contains(t, out, "search husk.svc.local")
	assert.Contains(t, out, "localhost")
}

// Pod networking over the CNI bridge: pod to pod (TCP over IPv4, ping over
// IPv6), pod to the bridge's gateway.
func TestHuskPodNetwork(t *testing.T) {
	sbA, cfgA := huskPod(t, "net-a")
	sbB, cfgB := huskPod(t, "net-b")
	server := huskStart(t, sbB, cfgB, "server", "mkdir -p /www && echo pod-b >/www/x && httpd -f -p 8080 -h /www")
	client := huskStart(t, sbA, cfgA, "client", "")
	_ = server

	st, err := runtimeService.PodSandboxStatus(sbB)
	require.NoError(t, err)
	ips := []string{st.GetNetwork().GetIp()}
	for _, ip := range st.GetNetwork().GetAdditionalIps() {
		ips = append(ips, ip.GetIp())
	}
	var v4, v6 string
	for _, ip := range ips {
		if strings.Contains(ip, ":") {
			v6 = ip
		} else if ip != "" {
			v4 = ip
		}
	}
	require.NotEmpty(t, v4, "pod B has no IPv4 address: %v", ips)

	t.Log("pod to pod: TCP over IPv4")
	var out string
	require.NoError(t, Eventually(func() (bool, error) {
		out, err = huskExec(t, client, fmt.Sprintf("wget -q -O - http://%s:8080/x", v4))
		return err == nil && out == "pod-b", nil
	}, time.Second, 20*time.Second), "wget from pod A to pod B: %s %v", out, err)

	if v6 != "" {
		t.Log("pod to pod: ping over IPv6")
		out, err = huskExec(t, client, fmt.Sprintf("ping -6 -c 1 -W 5 %s", v6))
		assert.NoError(t, err, "ping6 %s: %s", v6, out)
	}

	t.Log("pod to the bridge's gateway")
	out, err = huskExec(t, client, "gw=$(ip route | awk '/^default/ { print $3 }'); echo gw=$gw; ping -c 1 -W 5 $gw")
	assert.NoError(t, err, "ping the gateway: %s", out)
	assert.Contains(t, out, "gw=")
}

// One kubectl port-forward session, as kubectl makes it: CRI PortForward
// gives a URL, SPDY upgrades it to portforward.k8s.io, an error stream and
// a data stream name the port. Sends `request`, returns what came back on
// the data stream until its end, and the error stream's text.
func huskPortForward(t *testing.T, sb string, port int32, request string) (string, string) {
	resp, err := runtimeService.PortForward(&runtime.PortForwardRequest{PodSandboxId: sb, Port: []int32{port}})
	require.NoError(t, err)
	u, err := url.Parse(resp.GetUrl())
	require.NoError(t, err)
	transport, upgrader, err := spdy.RoundTripperFor(&rest.Config{})
	require.NoError(t, err)
	conn, _, err := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, "POST", u).Dial("portforward.k8s.io")
	require.NoError(t, err)
	defer conn.Close()
	h := http.Header{}
	h.Set("streamType", "error")
	h.Set("port", fmt.Sprint(port))
	h.Set("requestID", "0")
	errStream, err := conn.CreateStream(h)
	require.NoError(t, err)
	require.NoError(t, errStream.Close()) // nothing to send on it
	h.Set("streamType", "data")
	data, err := conn.CreateStream(h)
	require.NoError(t, err)
	type result struct {
		b   []byte
		err error
	}
	errCh, dataCh := make(chan result, 1), make(chan result, 1)
	go func() { b, err := io.ReadAll(errStream); errCh <- result{b, err} }()
	go func() { b, err := io.ReadAll(data); dataCh <- result{b, err} }()
	_, err = data.Write([]byte(request))
	require.NoError(t, err)
	var got [2]result
	for i, ch := range []chan result{dataCh, errCh} {
		select {
		case got[i] = <-ch:
		case <-time.After(30 * time.Second):
			t.Fatalf("port-forward to port %d: no end of stream after 30 s", port)
		}
	}
	return string(got[0].b), string(got[1].b)
}

// kubectl port-forward: containerd dials localhost:PORT in the pod's
// network namespace. The server listens on the pod's loopback only, so
// only a forward into the pod reaches it. A port nobody listens on is an
// error on the error stream, as with runc.
func TestHuskPodPortForward(t *testing.T) {
	sb, cfg := huskPod(t, "port-forward")
	server := huskStart(t, sb, cfg, "server",
		"mkdir -p /www && echo forwarded >/www/x && httpd -f -p 127.0.0.1:8080 -h /www")
	var out string
	var err error
	require.NoError(t, Eventually(func() (bool, error) {
		out, err = huskExec(t, server, "wget -q -O - http://127.0.0.1:8080/x")
		return err == nil && strings.TrimSpace(out) == "forwarded", nil
	}, time.Second, 20*time.Second), "httpd in the pod: %q %v", out, err)

	for i := 0; i < 2; i++ {
		data, errText := huskPortForward(t, sb, 8080, "GET /x HTTP/1.0\r\n\r\n")
		assert.Contains(t, data, "200 OK", "forward %d", i)
		assert.True(t, strings.HasSuffix(data, "\r\n\r\nforwarded\n"), "forward %d: %q", i, data)
		assert.Empty(t, errText, "forward %d", i)
	}

	data, errText := huskPortForward(t, sb, 8081, "GET /x HTTP/1.0\r\n\r\n")
	assert.Empty(t, data, "a port nobody listens on")
	assert.Contains(t, errText, "8081", "a port nobody listens on: the error names the port")
}

// A pod's containers share the sandbox's pid namespace (CRI's default), so
// a container's main process is not the init of a namespace of its own:
// when it dies, what it started (here two sleeps holding its stdout) would
// live on, and its exit would wait for that output to end. As runc's shim
// does, they are killed with it: Stop returns, the container is EXITED,
// and the pod's other container is untouched.
func TestHuskPodStopLeftovers(t *testing.T) {
	sb, cfg := huskPod(t, "stop-leftovers")
	other := huskStart(t, sb, cfg, "other", "sleep 2000")
	cn := huskStart(t, sb, cfg, "leaves-children",
		`sleep 1000 & trap "echo ignore sigterm" TERM; sleep 1001; wait`)
	var out string
	var err error
	require.NoError(t, Eventually(func() (bool, error) {
		out, err = huskExec(t, cn, "ps -o args | grep -c '^sleep 100[01]'")
		return err == nil && strings.TrimSpace(out) == "2", nil
	}, 200*time.Millisecond, 20*time.Second), "both sleeps running: %q %v", out, err)
	// What this test is about: the other container sees them (one pid
	// namespace for the pod), so their container's end does not take them.
	out, err = huskExec(t, other, "ps -o args | grep -c '^sleep 100[01]'")
	require.NoError(t, err)
	require.Equal(t, "2", strings.TrimSpace(out), "the pod's containers share a pid namespace")

	raw, err := RawRuntimeClient()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = raw.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: cn, Timeout: 1})
	require.NoError(t, err, "Stop of a container whose children outlive it")
	st, err := runtimeService.ContainerStatus(cn)
	require.NoError(t, err)
	assert.Equal(t, runtime.ContainerState_CONTAINER_EXITED, st.GetState())

	out, err = huskExec(t, other, "ps -o args | grep -c '^sleep 100[01]'; echo alive")
	assert.NoError(t, err)
	assert.Equal(t, "0\nalive", strings.TrimSpace(out), "the pod after the stop")
	require.NoError(t, runtimeService.RemoveContainer(cn))
}
