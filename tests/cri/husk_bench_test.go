/*
   make bench's pod figures (tests/bench/run.sh through tests/cri/run.sh
   --bench), for whichever handler runs them: the time from RunPodSandbox
   to a container's first line of output in its CRI log, and the host
   memory of a running pod: the PSS of the pod's shim and every process
   under it (for husk: QEMU, husk-vsockd, virtiofsd; for runc: the pause
   and the container processes). tests/cri/inner.sh runs TestHuskBench*
   only when asked to, never in make check.
*/

package integration

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The pids under (and including) the process whose command line has all of
// `words`.
func huskProcessTree(t *testing.T, words ...string) []int {
	ents, err := os.ReadDir("/proc")
	require.NoError(t, err)
	parent := map[int]int{}
	root := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so after the last ')'.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 2 {
			continue
		}
		parent[pid], _ = strconv.Atoi(f[1])
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		all := true
		for _, w := range words {
			all = all && strings.Contains(string(cmd), w)
		}
		if all && root == 0 {
			root = pid
		}
	}
	require.NotZero(t, root, "no process with %v in its command line", words)
	tree := []int{root}
	for grew := true; grew; {
		grew = false
		for pid, pp := range parent {
			in, under := false, false
			for _, x := range tree {
				in = in || x == pid
				under = under || x == pp
			}
			if under && !in {
				tree = append(tree, pid)
				grew = true
			}
		}
	}
	return tree
}

func huskPssKiB(t *testing.T, pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0 // gone meanwhile
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "Pss:") {
			kib, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(line[4:]), " kB"))
			return kib
		}
	}
	return 0
}

func huskMedian(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[(len(s)-1)/2]
}

// Each round: a pod (CNI network) with one busybox container that prints a
// line and sleeps. The clock runs from RunPodSandbox until that line is in
// the container's CRI log; the memory is read once the line is there.
func TestHuskBenchPod(t *testing.T) {
	rounds := 3
	if v, err := strconv.Atoi(os.Getenv("HUSK_CRI_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	img := GetImage(BusyBox)
	EnsureImageExists(t, img)
	var times, pss []float64
	for i := 0; i < rounds; i++ {
		logDir := t.TempDir()
		start := time.Now()
		cfg := PodSandboxConfig(fmt.Sprintf("bench-%d", i), "husk-bench", WithPodLogDirectory(logDir))
		sb, err := runtimeService.RunPodSandbox(cfg, *runtimeHandler)
		require.NoError(t, err)
		// Also when a round fails: no pod (or VM) is left to the next.
		t.Cleanup(func() {
			runtimeService.StopPodSandbox(sb)
			runtimeService.RemovePodSandbox(sb)
		})
		cn, err := runtimeService.CreateContainer(sb, ContainerConfig("first-output", img,
			WithCommand("sh", "-c", "echo husk-first-output; exec sleep 1000"),
			WithLogPath("first-output.log")), cfg)
		require.NoError(t, err)
		require.NoError(t, runtimeService.StartContainer(cn))
		logPath := filepath.Join(logDir, "first-output.log")
		deadline := time.Now().Add(60 * time.Second)
		for {
			b, _ := os.ReadFile(logPath)
			if strings.Contains(string(b), "husk-first-output") {
				break
			}
			require.True(t, time.Now().Before(deadline), "no output in %s after 60 s", logPath)
			time.Sleep(time.Millisecond)
		}
		ms := float64(time.Since(start).Microseconds()) / 1000
		kib, each := 0, []string{}
		for _, pid := range huskProcessTree(t, "containerd-shim-", "-id\x00"+sb) {
			k := huskPssKiB(t, pid)
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			each = append(each, fmt.Sprintf("%s %d", strings.TrimSpace(string(comm)), k))
			kib += k
		}
		times = append(times, ms)
		pss = append(pss, float64(kib))
		t.Logf("round %d: first output after %.1f ms, pod PSS %d KiB (%s)", i+1, ms, kib,
			strings.Join(each, ", "))
		require.NoError(t, runtimeService.StopPodSandbox(sb))
		require.NoError(t, runtimeService.RemovePodSandbox(sb))
	}
	// Read by tests/bench/run.sh.
	fmt.Printf("HUSK-BENCH pod-first-output-ms %.1f\n", huskMedian(times))
	fmt.Printf("HUSK-BENCH pod-pss-kib %.0f\n", huskMedian(pss))
}
