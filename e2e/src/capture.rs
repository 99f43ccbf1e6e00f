//! A packet capture on the loopback interface (Debian `tcpdump`, run as
//! root), read back from its pcap file: what really crossed the wire, for
//! tests that show signalling and media are encrypted.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// One IPv4 TCP or UDP packet's addresses and payload.
#[derive(Debug, Clone)]
pub struct Packet {
    pub udp: bool,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub payload: Vec<u8>,
}

/// A running `tcpdump -i lo`; [`Capture::stop`] ends it and reads the file.
pub struct Capture {
    child: tokio::process::Child,
    file: PathBuf,
}

impl Capture {
    /// Starts capturing loopback traffic matching `filter` (pcap filter
    /// syntax) into a file in `dir`; returns once tcpdump is listening.
    pub async fn start(dir: &Path, filter: &str) -> Capture {
        let file = dir.join("lo.pcap");
        let log = std::fs::File::create(dir.join("tcpdump.log")).unwrap();
        let child = tokio::process::Command::new("tcpdump")
            .args(["-i", "lo", "-U", "-n", "-s", "0", "-w"])
            .arg(&file)
            .arg(filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("tcpdump (install the Debian package tcpdump; run as root)");
        let log = dir.join("tcpdump.log");
        for _ in 0..100 {
            if std::fs::read_to_string(&log).is_ok_and(|l| l.contains("listening on")) {
                return Capture { child, file };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "tcpdump did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the capture and returns every TCP and UDP packet in it.
    pub async fn stop(mut self) -> Vec<Packet> {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGINT,
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let bytes = std::fs::read(&self.file).unwrap();
        parse_pcap(&bytes).unwrap()
    }
}

/// The packets of a classic pcap file of Ethernet (or Linux "cooked")
/// frames; anything but IPv4 TCP/UDP is skipped.
pub fn parse_pcap(bytes: &[u8]) -> Result<Vec<Packet>, String> {
    let header = bytes.get(..24).ok_or("no pcap header")?;
    let le = match header[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Err("not a pcap file".into()),
    };
    let u32_at = |b: &[u8], i: usize| {
        let w = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    let link = u32_at(header, 20);
    let l2 = match link {
        1 => 14,   // Ethernet (Linux lo)
        113 => 16, // Linux cooked capture
        0 => 4,    // BSD loopback
        _ => return Err(format!("link type {link}")),
    };
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let len = u32_at(bytes, at + 8) as usize;
        let frame = bytes
            .get(at + 16..at + 16 + len)
            .ok_or("truncated record")?;
        at += 16 + len;
        if let Some(p) = frame.get(l2..).and_then(ipv4) {
            out.push(p);
        }
    }
    Ok(out)
}

fn ipv4(ip: &[u8]) -> Option<Packet> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let l4 = ip.get(ihl..total)?;
    let port = |i: usize| u16::from_be_bytes([l4[i], l4[i + 1]]);
    let (udp, data) = match ip[9] {
        17 if l4.len() >= 8 => (true, 8),
        6 if l4.len() >= 20 => (false, usize::from(l4[12] >> 4) * 4),
        _ => return None,
    };
    Some(Packet {
        udp,
        src: SocketAddrV4::new(src, port(0)),
        dst: SocketAddrV4::new(dst, port(2)),
        payload: l4.get(data..)?.to_vec(),
    })
}

/// The audio of an RTP packet in clear G.711 (payload type 0 or 8), as
/// samples; `None` for anything else (SRTP's payload is noise, but its
/// header is clear, so callers look at the audio, not the header).
pub fn clear_g711(p: &Packet) -> Option<Vec<f32>> {
    let b = &p.payload;
    if !p.udp || b.len() < 12 + 80 || b[0] >> 6 != 2 {
        return None;
    }
    let pt = b[1] & 0x7f;
    let header = 12 + 4 * usize::from(b[0] & 0x0f);
    let payload = b.get(header..)?;
    let decode: fn(u8) -> f32 = match pt {
        0 => ulaw,
        8 => alaw,
        _ => return None,
    };
    Some(payload.iter().map(|&x| decode(x)).collect())
}

fn ulaw(u: u8) -> f32 {
    let u = !u;
    let t = ((i32::from(u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4);
    let s = if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 };
    s as f32 / 32768.0
}

fn alaw(a: u8) -> f32 {
    let a = a ^ 0x55;
    let seg = (a & 0x70) >> 4;
    let mut t = i32::from(a & 0x0f) << 4;
    t = match seg {
        0 => t + 8,
        1 => t + 0x108,
        _ => (t + 0x108) << (seg - 1),
    };
    let s = if a & 0x80 != 0 { t } else { -t };
    s as f32 / 32768.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_decodes_back_what_was_encoded() {
        for s in [-32000i16, -1000, 0, 1000, 32000] {
            let back = ulaw(crate::audio::ulaw_encode(s)) * 32768.0;
            assert!(
                (back - f32::from(s)).abs() < f32::from(s).abs() / 16.0 + 8.0,
                "{s} {back}"
            );
        }
        assert!(alaw(0xd5).abs() < 0.001 && alaw(0x55).abs() < 0.001);
    }

    #[test]
    fn a_pcap_of_one_udp_packet_reads_back() {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        f.extend([0; 8]);
        f.extend(65535u32.to_le_bytes());
        f.extend(1u32.to_le_bytes());
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 2,
        ];
        ip.extend([0x13, 0x88, 0x27, 0x10, 0, 11, 0, 0, b'h', b'i', b'!']);
        let total = ip.len() as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        let frame: Vec<u8> = [0u8; 14].iter().copied().chain(ip).collect();
        f.extend([0; 8]);
        f.extend((frame.len() as u32).to_le_bytes());
        f.extend((frame.len() as u32).to_le_bytes());
        f.extend(frame);
        let p = parse_pcap(&f).unwrap();
        assert_eq!(p.len(), 1);
        assert!(p[0].udp);
        assert_eq!(p[0].src.to_string(), "127.0.0.1:5000");
        assert_eq!(p[0].dst.to_string(), "127.0.0.2:10000");
        assert_eq!(p[0].payload, b"hi!");
    }
}
