//! A small synchronous rtnetlink client for building labs: veth pairs whose
//! ends are born in their namespaces, addresses, MTU, link state. The socket
//! lives in the network namespace of the thread that opens it.

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use sdn_vswitch::wire::EthernetAddress;
use std::ffi::CString;
use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;

/// One end of a veth pair to create.
#[derive(Debug, Clone)]
pub struct VethEnd {
    /// Device name in its namespace.
    pub name: String,
    /// An open descriptor of the namespace it is born in.
    pub netns_fd: RawFd,
    /// Ethernet address (kernel picks one when absent).
    pub mac: Option<EthernetAddress>,
    /// MTU (kernel default when absent).
    pub mtu: Option<u32>,
}

/// A kernel VXLAN device to create.
#[derive(Debug, Clone)]
pub struct KernelVxlan {
    /// Device name.
    pub name: String,
    /// VXLAN network identifier.
    pub vni: u32,
    /// Local underlay address.
    pub local: std::net::Ipv4Addr,
    /// The one remote endpoint.
    pub remote: std::net::Ipv4Addr,
    /// Index of the underlay device.
    pub underlay: u32,
    /// UDP destination port.
    pub port: u16,
    /// MTU (kernel picks underlay minus 50 when absent).
    pub mtu: Option<u32>,
}

/// A netlink route socket.
pub struct Netlink {
    socket: Socket,
    sequence: u32,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink")
            .field("sequence", &self.sequence)
            .finish()
    }
}

fn link_attributes(end: &VethEnd) -> Vec<LinkAttribute> {
    let mut attributes = vec![
        LinkAttribute::IfName(end.name.clone()),
        LinkAttribute::NetNsFd(end.netns_fd),
    ];
    if let Some(mac) = end.mac {
        attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    }
    if let Some(mtu) = end.mtu {
        attributes.push(LinkAttribute::Mtu(mtu));
    }
    attributes
}

/// The index of device `name` in the calling thread's namespace.
pub fn index_of(name: &str) -> io::Result<u32> {
    let cname = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "device name has a NUL"))?;
    // SAFETY: if_nametoindex reads a NUL-terminated string.
    match unsafe { libc::if_nametoindex(cname.as_ptr()) } {
        0 => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no device {name}"),
        )),
        index => Ok(index),
    }
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        Ok(Netlink {
            socket,
            sequence: 1,
        })
    }

    /// Sends a request and waits for the kernel's acknowledgement.
    fn request(&mut self, message: RouteNetlinkMessage, flags: u16, what: &str) -> io::Result<()> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        self.sequence += 1;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut buffer = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buffer);
        self.socket.send_to(&buffer, &SocketAddr::new(0, 0), 0)?;
        let mut reply = Vec::with_capacity(8192);
        loop {
            reply.clear();
            self.socket.recv(&mut reply, 0)?;
            let mut offset = 0;
            while offset < reply.len() {
                let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[offset..])
                    .map_err(|e| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("{what}: bad netlink reply: {e}"),
                        )
                    })?;
                let len = message.header.length as usize;
                if message.header.sequence_number == self.sequence
                    && let NetlinkPayload::Error(error) = &message.payload
                {
                    return match error.code {
                        None => Ok(()),
                        Some(_) => {
                            let err = error.to_io();
                            Err(io::Error::new(err.kind(), format!("{what}: {err}")))
                        }
                    };
                }
                if len == 0 {
                    break;
                }
                offset += len;
            }
        }
    }

    /// Creates a veth pair with each end born in its own namespace, down.
    /// (Asking for the peer to be up at creation fails: the kernel opens it
    /// before the two ends are joined.)
    pub fn create_veth(&mut self, a: &VethEnd, b: &VethEnd) -> io::Result<()> {
        let mut peer = LinkMessage::default();
        peer.attributes = link_attributes(b);
        let mut link = LinkMessage::default();
        link.attributes = link_attributes(a);
        link.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(link),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("create veth {} / {}", a.name, b.name),
        )
    }

    /// Creates a Linux bridge named `name`.
    pub fn create_bridge(&mut self, name: &str) -> io::Result<()> {
        let mut link = LinkMessage::default();
        link.attributes
            .push(LinkAttribute::IfName(name.to_string()));
        link.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.request(
            RouteNetlinkMessage::NewLink(link),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("create bridge {name}"),
        )
    }

    /// Creates a kernel VXLAN device for one VNI with a single remote
    /// endpoint (RFC 7348 port 4789), its underlay on device `underlay`.
    pub fn create_vxlan(&mut self, vxlan: &KernelVxlan) -> io::Result<()> {
        let mut link = LinkMessage::default();
        link.attributes
            .push(LinkAttribute::IfName(vxlan.name.clone()));
        if let Some(mtu) = vxlan.mtu {
            link.attributes.push(LinkAttribute::Mtu(mtu));
        }
        link.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(vec![
                InfoVxlan::Id(vxlan.vni),
                InfoVxlan::Local(vxlan.local),
                InfoVxlan::Group(vxlan.remote),
                InfoVxlan::Link(vxlan.underlay),
                InfoVxlan::Port(vxlan.port),
            ])),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(link),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("create vxlan {} (VNI {})", vxlan.name, vxlan.vni),
        )
    }

    /// Sets the MTU of device `index`.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> io::Result<()> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.attributes.push(LinkAttribute::Mtu(mtu));
        self.request(
            RouteNetlinkMessage::SetLink(link),
            0,
            &format!("set MTU {mtu} on device {index}"),
        )
    }

    /// Makes device `index` a port of bridge `master`.
    pub fn set_master(&mut self, index: u32, master: u32) -> io::Result<()> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.attributes.push(LinkAttribute::Controller(master));
        self.request(
            RouteNetlinkMessage::SetLink(link),
            0,
            &format!("attach device {index} to bridge {master}"),
        )
    }

    /// Deletes device `index`.
    pub fn delete_link(&mut self, index: u32) -> io::Result<()> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        self.request(
            RouteNetlinkMessage::DelLink(link),
            0,
            &format!("delete device {index}"),
        )
    }

    /// Brings device `index` up.
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        self.request(
            RouteNetlinkMessage::SetLink(link),
            0,
            &format!("bring up device {index}"),
        )
    }

    /// Adds `address/prefix_len` to device `index`.
    pub fn add_address(&mut self, index: u32, address: IpAddr, prefix_len: u8) -> io::Result<()> {
        let mut message = AddressMessage::default();
        message.header.family = match address {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        message.header.prefix_len = prefix_len;
        message.header.index = index;
        message.attributes.push(AddressAttribute::Local(address));
        message.attributes.push(AddressAttribute::Address(address));
        if let IpAddr::V4(v4) = address
            && prefix_len < 31
        {
            let host_bits = u32::MAX >> prefix_len;
            message.attributes.push(AddressAttribute::Broadcast(
                (u32::from(v4) | host_bits).into(),
            ));
        }
        self.request(
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("add address {address}/{prefix_len}"),
        )
    }

    /// Sets the Ethernet address of device `index`.
    pub fn set_mac(&mut self, index: u32, mac: EthernetAddress) -> io::Result<()> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        self.request(
            RouteNetlinkMessage::SetLink(link),
            0,
            &format!("set the address of device {index} to {mac}"),
        )
    }

    /// Adds an IPv4 route to `destination/prefix_len` out of device `index`:
    /// through `via` (taken as on the link even outside its subnets when
    /// `onlink`), or straight to the link when `via` is `None`.
    pub fn add_route(
        &mut self,
        destination: std::net::Ipv4Addr,
        prefix_len: u8,
        via: Option<std::net::Ipv4Addr>,
        index: u32,
        onlink: bool,
    ) -> io::Result<()> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        message.header.destination_prefix_length = prefix_len;
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Static;
        message.header.kind = RouteType::Unicast;
        message.header.scope = if via.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        if onlink {
            message.header.flags = RouteFlags::Onlink;
        }
        if prefix_len > 0 {
            message
                .attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet(destination)));
        }
        if let Some(gateway) = via {
            message
                .attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        }
        message.attributes.push(RouteAttribute::Oif(index));
        let what = match via {
            Some(gateway) => format!("add route {destination}/{prefix_len} via {gateway}"),
            None => format!("add route {destination}/{prefix_len} to device {index}"),
        };
        self.request(
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_CREATE | NLM_F_EXCL,
            &what,
        )
    }
}
