package rdmacm

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The uverbs nodes: /dev/infiniband/uverbsN, one per device, whose
// ibv_device is named in /sys/class/infiniband_verbs/uverbsN/ibdev. The
// kernel removes a device's node first thing when the device goes
// (ib_uverbs_remove_one), and creates one when a device registers.

var (
	uverbsDir   = "/dev/infiniband"
	uverbsClass = "/sys/class/infiniband_verbs"
)

// nodePoll is how often the watcher lists the nodes where inotify is not
// available.
const nodePoll = 250 * time.Millisecond

// watchNodes reports each uverbs node that goes (lost, with the device it
// served) or comes (created at once, added once its device is known). It
// runs for the life of the process; ready is closed once it watches.
func watchNodes(ready chan<- struct{}, lost func(dev string), created func(), added func(dev string)) {
	known := map[string]string{} // node -> device
	scan := func() map[string]bool {
		now := map[string]bool{}
		ents, _ := os.ReadDir(uverbsDir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "uverbs") {
				now[e.Name()] = true
			}
		}
		return now
	}
	for n := range scan() {
		known[n] = nodeDevice(n)
	}
	gone := func(n string) {
		dev, ok := known[n]
		if !ok {
			return
		}
		delete(known, n)
		lost(dev)
	}
	came := func(n string) {
		if _, ok := known[n]; ok {
			return
		}
		created()
		dev := ""
		for i := 0; i < 500 && dev == ""; i++ { // sysfs may trail the node
			if dev = nodeDevice(n); dev == "" {
				time.Sleep(2 * time.Millisecond)
			}
		}
		known[n] = dev
		if dev != "" {
			added(dev)
		}
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err == nil {
		if _, err = unix.InotifyAddWatch(fd, uverbsDir, unix.IN_CREATE|unix.IN_DELETE|unix.IN_ONLYDIR); err != nil {
			unix.Close(fd)
		}
	}
	close(ready)
	if err != nil {
		// No inotify, or no /dev/infiniband yet: list the nodes now and then.
		for {
			time.Sleep(nodePoll)
			now := scan()
			for n := range known {
				if !now[n] {
					gone(n)
				}
			}
			for n := range now {
				came(n)
			}
		}
	}
	// On the netpoller: this goroutine lives as long as the process, holds
	// no thread, and wakes only when a node changes.
	f := os.NewFile(uintptr(fd), "inotify "+uverbsDir)
	buf := make([]byte, 4096)
	for {
		n, err := f.Read(buf)
		if err != nil {
			return
		}
		// struct inotify_event: wd, mask, cookie, len, then len bytes of
		// name padded with NULs.
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			l := int(binary.NativeEndian.Uint32(buf[off+12:]))
			start := off + unix.SizeofInotifyEvent
			off = start + l
			if off > n {
				break
			}
			name := strings.TrimRight(string(buf[start:off]), "\x00")
			if !strings.HasPrefix(name, "uverbs") {
				continue
			}
			switch {
			case mask&unix.IN_DELETE != 0:
				gone(name)
			case mask&unix.IN_CREATE != 0:
				came(name)
			}
		}
	}
}

// nodeDevice is the device a uverbs node serves, "" if unknown.
func nodeDevice(node string) string {
	b, err := os.ReadFile(filepath.Join(uverbsClass, node, "ibdev"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// releaseDeletedNodes points the descriptors of the process that hold a
// lost device's uverbs file at /dev/null, which drops the process's hold on
// the file while the descriptor numbers stay taken: librdmacm's later close
// of them closes /dev/null. Those are every descriptor of a deleted uverbs
// node ("/dev/infiniband/uverbsN (deleted)" in /proc/self/fd), and the async
// event descriptor of each context in ctxs (an anonymous inode, told apart
// from a completion channel by the number librdmacm gave), if its command
// descriptor still is the deleted node. Only for lost devices no id uses
// any more, whose contexts librdmacm never uses again. It returns how many
// of ctxs still hold a node that is not deleted yet (the device is still
// going): the caller tries again.
//
// keep holds the inodes of the contexts of devices not being released (a
// device whose node is deleted but whose loss is not handled yet still has
// its objects): their descriptors are left alone.
func releaseDeletedNodes(ctxs []ctxFDs, keep map[uint64]bool) (pending int) {
	null, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer unix.Close(null)
	link := func(fd int) string {
		l, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		return l
	}
	deleted := func(l string) bool {
		return strings.HasPrefix(l, uverbsDir+"/uverbs") && strings.HasSuffix(l, " (deleted)")
	}
	for _, c := range ctxs {
		var st unix.Stat_t
		if unix.Fstat(c.cmd, &st) != nil || st.Ino != c.ino {
			continue // released already (librdmacm may have reused the number)
		}
		switch l := link(c.cmd); {
		case deleted(l):
			if link(c.async) == "anon_inode:[infinibandevent]" {
				unix.Dup3(null, c.async, unix.O_CLOEXEC)
			}
		case strings.HasPrefix(l, uverbsDir+"/uverbs"):
			pending++ // the node is still there
		}
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return pending
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd == null || !deleted(link(fd)) {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil || keep[st.Ino] {
			continue
		}
		// Checked again just before: the descriptor may have been closed
		// and its number given to another file meanwhile.
		if deleted(link(fd)) {
			var again unix.Stat_t
			if unix.Fstat(fd, &again) == nil && again.Ino == st.Ino {
				unix.Dup3(null, fd, unix.O_CLOEXEC)
			}
		}
	}
	return pending
}
