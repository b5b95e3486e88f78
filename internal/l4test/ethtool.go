package l4test

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The legacy ethtool ioctl (SIOCETHTOOL) is enough to switch TX checksum
// offload: ETHTOOL_STXCSUM goes through the kernel's generic feature code,
// like `ethtool -K DEV tx off`, without needing the ethtool binary. The
// device name resolves in the network namespace of the socket, so these run
// on a thread switched into the device's namespace (NS.Run).

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with ifr_data set: the name, then a pointer in
// the union, padded to the size of struct ifreq (the layout x/sys/unix uses
// internally for IoctlGetEthtoolDrvinfo).
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ethtool runs one ethtool_value command on dev from a socket created in
// the calling thread's network namespace.
func ethtool(dev string, cmd, data uint32) (uint32, error) {
	if len(dev) >= unix.IFNAMSIZ {
		return 0, fmt.Errorf("interface name %q too long", dev)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	val := &ethtoolValue{cmd: cmd, data: data}
	var ifr ifreqData
	copy(ifr.name[:], dev)
	ifr.data = unsafe.Pointer(val)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(val)
	if errno != 0 {
		return 0, errno
	}
	return val.data, nil
}

// setTxChecksum switches TX checksum offload on dev on or off and checks
// that the kernel took it.
func setTxChecksum(dev string, on bool) error {
	var want uint32
	if on {
		want = 1
	}
	if _, err := ethtool(dev, unix.ETHTOOL_STXCSUM, want); err != nil {
		return fmt.Errorf("ethtool -K %s tx %v: %w", dev, onOff(on), err)
	}
	got, err := TxChecksum(dev)
	if err != nil {
		return err
	}
	if got != on {
		return fmt.Errorf("ethtool -K %s tx %v: still %v", dev, onOff(on), onOff(got))
	}
	return nil
}

// TxChecksum reports whether TX checksum offload is on for dev, in the
// network namespace of the calling thread: call it inside NS.Run.
func TxChecksum(dev string) (bool, error) {
	v, err := ethtool(dev, unix.ETHTOOL_GTXCSUM, 0)
	if err != nil {
		return false, fmt.Errorf("ethtool -k %s: %w", dev, err)
	}
	return v != 0, nil
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}
