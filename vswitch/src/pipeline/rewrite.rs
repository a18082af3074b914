//! In-place field rewrites of a frame (set-field actions), keeping the IPv4
//! header checksum and TCP/UDP checksums right. Frames whose L4 checksum the
//! kernel left partial (virtio-net `NEEDS_CSUM`) hold only the pseudo-header
//! sum in the checksum field, so only pseudo-header changes touch it, in the
//! opposite sense (as Linux's `inet_proto_csum_replace4` does).

use crate::flow::{FlowKey, Layout, SetField};
use crate::wire::{IpProtocol, checksum};

const ETH_IPV4: u16 = 0x0800;
const IPV4_CHECKSUM: usize = 10;
const IPV4_SRC: usize = 12;
const IPV4_DST: usize = 16;
const TCP_CHECKSUM: usize = 16;
const UDP_CHECKSUM: usize = 6;

/// Applies `field` to `frame`, whose key and layout were extracted from it.
/// A rewrite of a layer the frame does not have is ignored (OpenFlow would
/// have refused the flow for a missing prerequisite).
pub(crate) fn apply(
    frame: &mut [u8],
    key: &FlowKey,
    layout: Layout,
    partial_csum: bool,
    field: SetField,
) {
    match field {
        SetField::EthDst(mac) => write(frame, 0, &mac.0),
        SetField::EthSrc(mac) => write(frame, 6, &mac.0),
        SetField::Ipv4Src(addr) => {
            set_ipv4(frame, key, layout, partial_csum, IPV4_SRC, addr.octets())
        }
        SetField::Ipv4Dst(addr) => {
            set_ipv4(frame, key, layout, partial_csum, IPV4_DST, addr.octets())
        }
        SetField::TpSrc(port) => set_port(frame, key, layout, partial_csum, 0, port),
        SetField::TpDst(port) => set_port(frame, key, layout, partial_csum, 2, port),
        // Tags and tunnel metadata are handled where the frame can move (execute.rs).
        SetField::VlanVid(_)
        | SetField::VlanPcp(_)
        | SetField::TunnelId(_)
        | SetField::TunnelDst(_) => {}
    }
}

/// Applies `field` to a key, so that later tables match the rewritten frame.
pub(crate) fn apply_to_key(key: &mut FlowKey, field: SetField) {
    match field {
        SetField::EthDst(mac) => key.set_eth_dst(mac),
        SetField::EthSrc(mac) => key.set_eth_src(mac),
        SetField::Ipv4Src(a) if key.eth_type() == ETH_IPV4 => {
            key.set_ip_src_bits(u128::from(u32::from(a)))
        }
        SetField::Ipv4Dst(a) if key.eth_type() == ETH_IPV4 => {
            key.set_ip_dst_bits(u128::from(u32::from(a)))
        }
        SetField::TpSrc(p) if is_tcp_or_udp(key) => key.set_tp_src(p),
        SetField::TpDst(p) if is_tcp_or_udp(key) => key.set_tp_dst(p),
        SetField::VlanVid(vid) if key.vlan_tci() != 0 => {
            key.set_vlan_tci((key.vlan_tci() & 0xf000) | (vid & 0x0fff))
        }
        // An untagged frame gets a tag (PCP 0).
        SetField::VlanVid(vid) => key.set_vlan_tci(crate::flow::key::VLAN_PRESENT | (vid & 0x0fff)),
        SetField::VlanPcp(pcp) if key.vlan_tci() != 0 => {
            key.set_vlan_tci((key.vlan_tci() & 0x1fff) | (u16::from(pcp & 7) << 13));
        }
        _ => {}
    }
}

fn is_tcp_or_udp(key: &FlowKey) -> bool {
    matches!(
        IpProtocol::from(key.ip_proto()),
        IpProtocol::Tcp | IpProtocol::Udp
    ) && matches!(key.eth_type(), 0x0800 | 0x86dd)
}

fn write(frame: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = frame.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

fn read16(frame: &[u8], at: usize) -> Option<u16> {
    let b = frame.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Where the L4 checksum of the frame is, if it has one we must maintain.
fn l4_checksum_at(frame: &[u8], key: &FlowKey, layout: Layout) -> Option<usize> {
    if layout.l4 == 0 {
        return None;
    }
    let at = usize::from(layout.l4)
        + match IpProtocol::from(key.ip_proto()) {
            IpProtocol::Tcp => TCP_CHECKSUM,
            // RFC 768: zero means the sender computed no checksum.
            IpProtocol::Udp if read16(frame, usize::from(layout.l4) + UDP_CHECKSUM) != Some(0) => {
                UDP_CHECKSUM
            }
            _ => return None,
        };
    (at + 2 <= frame.len()).then_some(at)
}

fn set_ipv4(
    frame: &mut [u8],
    key: &FlowKey,
    layout: Layout,
    partial: bool,
    offset: usize,
    new: [u8; 4],
) {
    if key.eth_type() != ETH_IPV4 || layout.l3 == 0 {
        return;
    }
    let l3 = usize::from(layout.l3);
    let Some(old) = frame
        .get(l3 + offset..l3 + offset + 4)
        .map(|b| [b[0], b[1], b[2], b[3]])
    else {
        return;
    };
    write(frame, l3 + offset, &new);
    if let Some(sum) = read16(frame, l3 + IPV4_CHECKSUM) {
        write(
            frame,
            l3 + IPV4_CHECKSUM,
            &checksum::update_bytes(sum, &old, &new).to_be_bytes(),
        );
    }
    if let Some(at) = l4_checksum_at(frame, key, layout)
        && let Some(sum) = read16(frame, at)
    {
        let updated = if partial {
            // The field holds the uncomplemented pseudo-header sum.
            !checksum::update_bytes(!sum, &old, &new)
        } else {
            checksum::update_bytes(sum, &old, &new)
        };
        write(frame, at, &updated.to_be_bytes());
    }
}

fn set_port(
    frame: &mut [u8],
    key: &FlowKey,
    layout: Layout,
    partial: bool,
    offset: usize,
    port: u16,
) {
    if !is_tcp_or_udp(key) || layout.l4 == 0 {
        return;
    }
    let at = usize::from(layout.l4) + offset;
    let Some(old) = read16(frame, at) else { return };
    write(frame, at, &port.to_be_bytes());
    // Ports are not in the pseudo-header: a partial checksum is unaffected.
    if !partial
        && let Some(sum_at) = l4_checksum_at(frame, key, layout)
        && let Some(sum) = read16(frame, sum_at)
    {
        write(
            frame,
            sum_at,
            &checksum::update_word(sum, old, port).to_be_bytes(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{FrameBuilder, checksums_valid, mac};
    use crate::wire::{IpPair, Ipv4Packet};
    use std::net::Ipv4Addr;

    fn rewrite(frame: &mut [u8], partial: bool, field: SetField) {
        let extracted = FlowKey::extract(frame, 1).unwrap();
        apply(frame, &extracted.key, extracted.layout, partial, field);
    }

    #[test]
    fn ipv4_and_ports_keep_checksums_valid() {
        for mut frame in [
            FrameBuilder::tcp4("10.0.0.1:1000", "10.0.0.2:80", b"payload").build(),
            FrameBuilder::udp4("10.0.0.1:1000", "10.0.0.2:53", b"payload!").build(),
        ] {
            rewrite(
                &mut frame,
                false,
                SetField::Ipv4Dst(Ipv4Addr::new(192, 168, 7, 9)),
            );
            rewrite(
                &mut frame,
                false,
                SetField::Ipv4Src(Ipv4Addr::new(172, 16, 0, 1)),
            );
            rewrite(&mut frame, false, SetField::TpDst(8080));
            rewrite(&mut frame, false, SetField::TpSrc(4242));
            assert!(checksums_valid(&frame));
            let key = FlowKey::extract(&frame, 1).unwrap().key;
            assert_eq!(key.ip_dst(), Some("192.168.7.9".parse().unwrap()));
            assert_eq!(key.ip_src(), Some("172.16.0.1".parse().unwrap()));
            assert_eq!((key.tp_src(), key.tp_dst()), (4242, 8080));
        }
    }

    #[test]
    fn partial_checksum_tracks_only_the_pseudo_header() {
        // Build a frame whose TCP checksum field holds the pseudo-header sum, as
        // the kernel leaves it for CHECKSUM_PARTIAL; complete it after the
        // rewrite and compare with a frame built with the final addresses.
        let partial_of = |frame: &mut Vec<u8>| {
            let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
            let len = ip.payload().len();
            let ips = IpPair::V4(ip.src_addr(), ip.dst_addr());
            let pseudo = checksum::fold(ips.pseudo_header(IpProtocol::Tcp, len));
            frame[34 + 16..34 + 18].copy_from_slice(&pseudo.to_be_bytes());
        };
        let complete = |frame: &mut Vec<u8>| {
            let sum = checksum::fold(checksum::accumulate(0, &frame[34..]));
            frame[34 + 16..34 + 18].copy_from_slice(&(!sum).to_be_bytes());
        };
        let mut frame = FrameBuilder::tcp4("10.0.0.1:1000", "10.0.0.2:80", b"data").build();
        partial_of(&mut frame);
        rewrite(
            &mut frame,
            true,
            SetField::Ipv4Dst(Ipv4Addr::new(10, 0, 0, 99)),
        );
        rewrite(&mut frame, true, SetField::TpDst(81));
        complete(&mut frame);
        assert!(checksums_valid(&frame));
    }

    #[test]
    fn macs_and_missing_layers() {
        let mut frame = FrameBuilder::arp_request(mac(1), "10.0.0.1", "10.0.0.2").build();
        let before = frame.clone();
        rewrite(
            &mut frame,
            false,
            SetField::Ipv4Dst(Ipv4Addr::new(1, 2, 3, 4)),
        );
        rewrite(&mut frame, false, SetField::TpDst(1));
        assert_eq!(frame, before, "ARP has no IPv4 header or ports to rewrite");
        rewrite(&mut frame, false, SetField::EthDst(mac(7)));
        rewrite(&mut frame, false, SetField::EthSrc(mac(8)));
        assert_eq!(&frame[..12], &[mac(7).0, mac(8).0].concat()[..]);
    }

    #[test]
    fn udp_without_checksum_stays_without() {
        let mut frame = FrameBuilder::udp4("10.0.0.1:1000", "10.0.0.2:53", b"x").build();
        frame[34 + 6] = 0;
        frame[34 + 7] = 0;
        rewrite(
            &mut frame,
            false,
            SetField::Ipv4Dst(Ipv4Addr::new(10, 0, 0, 3)),
        );
        assert_eq!(&frame[40..42], &[0, 0]);
        assert!(checksums_valid(&frame));
    }
}
