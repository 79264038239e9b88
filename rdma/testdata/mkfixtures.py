#!/usr/bin/env python3
"""Writes the sysfs fixtures of package rdma (see README.md here).

Run from anywhere: python3 rdma/testdata/mkfixtures.py. It replaces the
fixture directories next to it. The layout copies sysfs: device directories
under sys/devices/..., relative symbolic links from sys/class/infiniband and
sys/class/net, and each netdev's device link and lower_/upper_ links. PCI
addresses are written with '_' for ':' (0000_03_00.0), because Go module zips
refuse ':' in file names; the reader never looks at those names.

Unused GID entries hold zeros in gids/K as on a real kernel; their
gid_attrs/types/K and ndevs/K files, which a real kernel has but answers with
EINVAL, are left out (a file cannot fail like that; the tests inject EINVAL).
Tables are trimmed (rxe has 1024 entries, mlx5 255, IB 128).
"""

import ipaddress
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))

V1 = "IB/RoCE v1"
V2 = "RoCE v2"


def gid_text(addr):
    """A GID as sysfs writes it: eight groups of four hex digits."""
    a = ipaddress.ip_address(addr)
    if a.version == 4:
        a = ipaddress.IPv6Address("::ffff:" + addr)
    return a.exploded


def eui64(mac):
    """The EUI-64 of a MAC as a GUID, "5054:00ff:fe77:0001" (rxe's node GUID,
    the interface ID of its default GID)."""
    b = [int(x, 16) for x in mac.split(":")]
    b = [b[0] ^ 2] + b[1:3] + [0xff, 0xfe] + b[3:]
    return ":".join("%02x%02x" % (b[i], b[i + 1]) for i in range(0, 8, 2))


def write(root, rel, text):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        f.write(text + "\n")


def link(root, rel, target_rel):
    """A relative symbolic link at rel pointing to target_rel (both from root)."""
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    t = os.path.relpath(os.path.join(root, target_rel), os.path.dirname(p))
    os.symlink(t, p)


def device(root, name, devpath, node_guid, ports, node_type="1: CA",
           node_desc=None, parent=None, fw_ver="", table=8):
    """devpath: the device's directory below sys/devices."""
    d = "sys/devices/" + devpath
    write(root, d + "/node_type", node_type)
    write(root, d + "/node_guid", node_guid)
    write(root, d + "/sys_image_guid", node_guid)
    write(root, d + "/node_desc", node_desc or name)
    write(root, d + "/fw_ver", fw_ver)
    if parent:
        write(root, d + "/parent", parent)
    for num, port in ports.items():
        pd = "%s/ports/%d" % (d, num)
        write(root, pd + "/state", port["state"])
        write(root, pd + "/phys_state", port["phys_state"])
        write(root, pd + "/link_layer", port["link_layer"])
        write(root, pd + "/lid", port.get("lid", "0x0"))
        write(root, pd + "/rate", port.get("rate", "100 Gb/sec (4X EDR)"))
        write(root, pd + "/pkeys/0", "0xffff")
        gids = port["gids"]
        for k in range(max(table, max(gids) + 1 if gids else 0)):
            if k in gids:
                g = gids[k]
                write(root, "%s/gids/%d" % (pd, k), gid_text(g[0]))
                write(root, "%s/gid_attrs/types/%d" % (pd, k), g[1])
                if len(g) > 2 and g[2]:
                    write(root, "%s/gid_attrs/ndevs/%d" % (pd, k), g[2])
            else:
                write(root, "%s/gids/%d" % (pd, k), "0000:" * 7 + "0000")
        for group in ("counters", "hw_counters"):
            for cname, v in port.get(group, {}).items():
                write(root, "%s/%s/%s" % (pd, group, cname), str(v))
    link(root, "sys/class/infiniband/" + name, d)


def netdev(root, name, devpath, address, type_="1", dev_port="0", dev_id="0x0",
           device=None, lower=(), upper=()):
    """devpath: the netdev's directory below sys/devices; device: the parent
    device's directory below sys/devices (the target of the device link)."""
    d = "sys/devices/" + devpath
    write(root, d + "/address", address)
    write(root, d + "/type", type_)
    write(root, d + "/dev_port", dev_port)
    write(root, d + "/dev_id", dev_id)
    write(root, d + "/operstate", "up")
    if device:
        link(root, d + "/device", "sys/devices/" + device)
    for l, lpath in lower:
        link(root, d + "/lower_" + l, "sys/devices/" + lpath)
    for u, upath in upper:
        link(root, d + "/upper_" + u, "sys/devices/" + upath)
    link(root, "sys/class/net/" + name, d)


def lo(root):
    netdev(root, "lo", "virtual/net/lo", "00:00:00:00:00:00", type_="772")


def rdma_cm(root):
    """An empty file where the character device is (git cannot hold one)."""
    p = os.path.join(root, "dev/infiniband/rdma_cm")
    os.makedirs(os.path.dirname(p), exist_ok=True)
    open(p, "w").close()


def addrs(root, lines):
    with open(os.path.join(root, "addrs.txt"), "w") as f:
        f.write("# netdev address, as `ip -br addr` shows them\n")
        for l in lines:
            f.write(l + "\n")


def eth_port(gids, state="4: ACTIVE", phys="5: LinkUp", rate="100 Gb/sec (4X EDR)",
             counters=None, hw=None):
    return {"state": state, "phys_state": phys, "link_layer": "Ethernet",
            "rate": rate, "gids": gids, "counters": counters or {}, "hw_counters": hw or {}}


def ib_port(gids, state="4: ACTIVE", phys="5: LinkUp", lid="0x12", counters=None, hw=None):
    return {"state": state, "phys_state": phys, "link_layer": "InfiniBand",
            "lid": lid, "rate": "100 Gb/sec (4X EDR)", "gids": gids,
            "counters": counters or {}, "hw_counters": hw or {}}


def rxe_hw(sent=0, rcvd=0):
    """rxe's hw_counters (it has no counters/ directory: no PMA). lifespan
    is a setting, the milliseconds between refreshes, not a counter."""
    names = ["ack_deferred", "completer_retry_err", "duplicate_request",
             "link_downed", "out_of_seq_request", "rcvd_rnr_err",
             "rcvd_seq_err", "rdma_recvs", "rdma_sends", "retry_exceeded_err",
             "retry_rnr_exceeded_err", "send_err", "send_rnr_err"]
    hw = {n: 0 for n in names}
    hw.update({"lifespan": 12, "sent_pkts": sent, "rcvd_pkts": rcvd})
    return hw


def pma(xmit_pkts, rcv_pkts):
    """The PMA counters of counters/ (data in units of 4 bytes)."""
    return {"port_xmit_packets": xmit_pkts, "port_rcv_packets": rcv_pkts,
            "port_xmit_data": xmit_pkts * 256, "port_rcv_data": rcv_pkts * 256,
            "port_rcv_errors": 0, "port_xmit_discards": 0, "symbol_error": 0,
            "link_downed": 0, "link_error_recovery": 0}


def mlx5_hw(out_of_sequence=0, retrans=0, cnp=0):
    """mlx5's hw_counters on a RoCE port, a subset."""
    return {"out_of_sequence": out_of_sequence, "packet_seq_err": 0,
            "duplicate_request": 0, "implied_nak_seq_err": 0,
            "local_ack_timeout_err": retrans, "rnr_nak_retry_err": 0,
            "roce_adp_retrans": retrans, "np_cnp_sent": cnp, "rp_cnp_handled": cnp,
            "np_ecn_marked_roce_packets": cnp, "out_of_buffer": 0,
            "rx_write_requests": 1000, "rx_read_requests": 10, "lifespan": 10}


def v1v2(start, addr, ndev):
    """mlx5's pair: v1 at the even index, v2 at the odd one."""
    return {start: (addr, V1, ndev), start + 1: (addr, V2, ndev)}


def fresh(name):
    root = os.path.join(HERE, name)
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    return root


def softroce():
    """The SoftRoCE guest of ci/softroce/run --nics 2 (copied from it)."""
    root = fresh("softroce")
    for i, (eth, mac, v4, v6) in enumerate([
            ("eth0", "52:54:00:77:00:01", "10.77.0.1", "fd77::1"),
            ("eth1", "52:54:00:77:01:01", "10.78.0.1", "fd78::1")]):
        guid = eui64(mac)
        ll = "fe80::" + guid
        pci = "pci0000_00/0000_00_0%d.0/virtio%d" % (4 + i, 2 + i)
        netdev(root, eth, pci + "/net/" + eth, mac, device=pci)
        device(root, "rxe%d" % i, "virtual/infiniband/rxe%d" % i, guid,
               {1: eth_port({0: (ll, V2, eth), 1: (v4, V2, eth), 2: (v6, V2, eth)},
                            rate="2.5 Gb/sec (1X SDR)", hw=rxe_hw(sent=40 + i, rcvd=38 + i))},
               node_desc="rxe", parent=eth)
    lo(root)
    rdma_cm(root)
    addrs(root, ["lo 127.0.0.1/8", "lo ::1/128",
                 "eth0 10.77.0.1/24", "eth0 fd77::1/64", "eth0 fe80::5054:ff:fe77:1/64",
                 "eth1 10.78.0.1/24", "eth1 fd78::1/64", "eth1 fe80::5054:ff:fe77:101/64"])


def connectx():
    """Two ConnectX-5 Ethernet functions (mlx5), RoCE v1 and v2 GIDs for every
    address, a VLAN eth2.100 on eth2, a function whose link is down (eth3),
    and a NIC with no RDMA device (eth9)."""
    root = fresh("connectx")
    pf0 = "pci0000_00/0000_00_02.0/0000_03_00.0"
    pf1 = "pci0000_00/0000_00_02.0/0000_03_00.1"
    ll2 = "fe80::bace:f6ff:fea1:b2c0"
    ll3 = "fe80::bace:f6ff:fea1:b2c1"
    gids = {}
    gids.update(v1v2(0, ll2, "eth2"))
    gids.update(v1v2(2, "192.168.10.5", "eth2"))
    gids.update(v1v2(4, "fd10::5", "eth2"))
    gids.update(v1v2(6, ll2, "eth2.100"))
    gids.update(v1v2(8, "192.168.100.5", "eth2.100"))
    device(root, "mlx5_0", pf0 + "/infiniband/mlx5_0", "b8ce:f603:00a1:b2c0",
           {1: eth_port(gids, counters=pma(123456, 120000),
                        hw=mlx5_hw(out_of_sequence=7, retrans=3, cnp=12))}, node_desc="host1 mlx5_0", fw_ver="16.35.2000", table=16)
    gids = {}
    gids.update(v1v2(0, ll3, "eth3"))
    gids.update(v1v2(2, "192.168.11.5", "eth3"))
    device(root, "mlx5_1", pf1 + "/infiniband/mlx5_1", "b8ce:f603:00a1:b2c1",
           {1: eth_port(gids, state="1: DOWN", phys="3: Disabled", counters=pma(0, 0), hw=mlx5_hw())},
           node_desc="host1 mlx5_1", fw_ver="16.35.2000", table=16)
    netdev(root, "eth2", pf0 + "/net/eth2", "b8:ce:f6:a1:b2:c0", device=pf0,
           upper=[("eth2.100", "virtual/net/eth2.100")])
    netdev(root, "eth3", pf1 + "/net/eth3", "b8:ce:f6:a1:b2:c1", device=pf1)
    netdev(root, "eth2.100", "virtual/net/eth2.100", "b8:ce:f6:a1:b2:c0",
           lower=[("eth2", pf0 + "/net/eth2")])
    e1000 = "pci0000_00/0000_00_19.0"
    netdev(root, "eth9", e1000 + "/net/eth9", "00:1b:21:3c:9d:09", device=e1000)
    lo(root)
    rdma_cm(root)
    addrs(root, ["lo 127.0.0.1/8", "lo ::1/128",
                 "eth2 192.168.10.5/24", "eth2 fd10::5/64", "eth2 " + ll2 + "/64",
                 "# added a moment ago: the kernel has not yet written its GIDs",
                 "eth2 192.168.10.99/24",
                 "eth2.100 192.168.100.5/24", "eth2.100 " + ll2 + "/64",
                 "eth3 192.168.11.5/24", "eth3 " + ll3 + "/64",
                 "eth9 192.0.2.9/24", "eth9 fe80::21b:21ff:fe3c:9d09/64"])


def bond():
    """RoCE LAG: mlx5_bond_0 serving bond0 over the two functions eth4 and eth5
    (the second function's own RDMA device is gone while the LAG is up)."""
    root = fresh("bond")
    pf0 = "pci0000_00/0000_00_04.0/0000_05_00.0"
    pf1 = "pci0000_00/0000_00_04.0/0000_05_00.1"
    ll = "fe80::e42:a1ff:fe65:7a2c"
    gids = {}
    gids.update(v1v2(0, ll, "bond0"))
    gids.update(v1v2(2, "10.20.0.5", "bond0"))
    device(root, "mlx5_bond_0", pf0 + "/infiniband/mlx5_bond_0", "0c42:a103:0065:7a2c",
           {1: eth_port(gids, counters=pma(5000, 5100), hw=mlx5_hw())}, node_desc="host2 mlx5_bond_0", fw_ver="22.36.1010", table=16)
    netdev(root, "eth4", pf0 + "/net/eth4", "0c:42:a1:65:7a:2c", device=pf0,
           upper=[("bond0", "virtual/net/bond0")])
    netdev(root, "eth5", pf1 + "/net/eth5", "0c:42:a1:65:7a:2c", device=pf1,
           upper=[("bond0", "virtual/net/bond0")])
    netdev(root, "bond0", "virtual/net/bond0", "0c:42:a1:65:7a:2c",
           lower=[("eth4", pf0 + "/net/eth4"), ("eth5", pf1 + "/net/eth5")])
    write(root, "sys/devices/virtual/net/bond0/bonding/slaves", "eth4 eth5")
    write(root, "sys/devices/virtual/net/bond0/bonding/mode", "802.3ad 4")
    lo(root)
    rdma_cm(root)
    addrs(root, ["lo 127.0.0.1/8", "lo ::1/128",
                 "bond0 10.20.0.5/24", "bond0 " + ll + "/64"])


def ipoib():
    """InfiniBand with IPoIB: a ConnectX-6 function (mlx5_2, ib0) and a
    dual-port ConnectX-3 (mlx4_0, ib1 on port 1, ib2 on port 2, whose subnet
    manager has not brought it past INIT)."""
    root = fresh("ipoib")
    cx6 = "pci0000_00/0000_00_03.0/0000_07_00.0"
    cx3 = "pci0000_00/0000_00_03.2/0000_08_00.0"
    device(root, "mlx5_2", cx6 + "/infiniband/mlx5_2", "248a:0703:0049:d4f0",
           {1: ib_port({0: ("fe80::248a:703:49:d4f0", V1, None)}, counters=pma(900, 901),
                       hw={"out_of_sequence": 0, "local_ack_timeout_err": 0, "lifespan": 10})},
           node_desc="host3 mlx5_2", fw_ver="20.31.1014")
    device(root, "mlx4_0", cx3 + "/infiniband/mlx4_0", "0002:c903:0010:a3b0",
           {1: ib_port({0: ("fe80::2:c903:10:a3b1", V1, None)}, lid="0x1f", counters=pma(77, 78)),
            2: ib_port({0: ("fe80::2:c903:10:a3b2", V1, None)}, state="2: INIT", lid="0xffff",
                       counters=pma(0, 0))},
           node_desc="host3 mlx4_0", fw_ver="2.42.5000")
    netdev(root, "ib0", cx6 + "/net/ib0",
           "00:00:10:87:fe:80:00:00:00:00:00:00:24:8a:07:03:00:49:d4:f0",
           type_="32", device=cx6)
    netdev(root, "ib1", cx3 + "/net/ib1",
           "80:00:02:08:fe:80:00:00:00:00:00:00:00:02:c9:03:00:10:a3:b1",
           type_="32", device=cx3)
    netdev(root, "ib2", cx3 + "/net/ib2",
           "80:00:02:09:fe:80:00:00:00:00:00:00:00:02:c9:03:00:10:a3:b2",
           type_="32", dev_port="1", dev_id="0x1", device=cx3)
    lo(root)
    rdma_cm(root)
    addrs(root, ["lo 127.0.0.1/8", "lo ::1/128",
                 "ib0 10.30.0.5/16", "ib0 fe80::268a:703:49:d4f0/64",
                 "ib1 10.31.0.5/16", "ib2 10.32.0.5/16"])


def nordma():
    """A host whose kernel has no RDMA (like the machines CI runs on): no
    sys/class/infiniband, no rdma_cm node."""
    root = fresh("nordma")
    netdev(root, "eth0", "pci0000_00/0000_00_03.0/virtio0/net/eth0",
           "02:00:00:00:00:02", device="pci0000_00/0000_00_03.0/virtio0")
    lo(root)
    addrs(root, ["lo 127.0.0.1/8", "lo ::1/128", "eth0 192.0.2.2/24"])


if __name__ == "__main__":
    softroce()
    connectx()
    bond()
    ipoib()
    nordma()
