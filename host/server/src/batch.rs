//! Many datagrams to many destinations in one system call (Linux
//! `sendmmsg`): the pacer's packets of one millisecond go out together.
//!
//! Written here because the standard library has no `sendmmsg`, socket2
//! stops at addresses, and nix would be a large dependency for one call.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::SockAddr;

/// Most messages per system call (the kernel's UIO_MAXIOV).
const CHUNK: usize = 1024;

/// Datagrams waiting to be sent.
#[derive(Default)]
pub struct BatchSender {
    data: Vec<u8>,
    /// (offset into `data`, length, destination)
    messages: Vec<(usize, usize, SockAddr)>,
}

/// What one flush did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    pub sent: usize,
    /// Datagrams the kernel refused (a full socket buffer on a
    /// non-blocking socket): UDP may drop, and so do we.
    pub dropped: usize,
}

impl BatchSender {
    pub fn new() -> BatchSender {
        BatchSender::default()
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn push(&mut self, dest: SocketAddr, packet: &[u8]) {
        let offset = self.data.len();
        self.data.extend_from_slice(packet);
        self.messages
            .push((offset, packet.len(), SockAddr::from(dest)));
    }

    /// Sends everything queued through `socket`.
    pub fn flush(&mut self, socket: &impl AsRawFd) -> Flushed {
        let mut result = Flushed::default();
        let fd = socket.as_raw_fd();
        for chunk in self.messages.chunks(CHUNK) {
            let mut iovecs: Vec<libc::iovec> = chunk
                .iter()
                .map(|(offset, len, _)| libc::iovec {
                    iov_base: self.data[*offset..].as_ptr() as *mut libc::c_void,
                    iov_len: *len,
                })
                .collect();
            let mut headers: Vec<libc::mmsghdr> = chunk
                .iter()
                .zip(iovecs.iter_mut())
                .map(|((_, _, addr), iov)| {
                    // SAFETY: an all-zero msghdr is a valid empty header.
                    let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    h.msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
                    h.msg_hdr.msg_namelen = addr.len();
                    h.msg_hdr.msg_iov = iov as *mut libc::iovec;
                    h.msg_hdr.msg_iovlen = 1;
                    h
                })
                .collect();
            let mut done = 0;
            while done < headers.len() {
                // SAFETY: every header points at an iovec and an address that
                // live until this function returns, and the iovecs point into
                // `self.data`, which is not touched meanwhile.
                let n = unsafe {
                    libc::sendmmsg(
                        fd,
                        headers[done..].as_mut_ptr(),
                        (headers.len() - done) as libc::c_uint,
                        0,
                    )
                };
                if n <= 0 {
                    let err = std::io::Error::last_os_error();
                    if err.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    // Full buffer or a bad destination: drop this one and
                    // go on with the rest.
                    result.dropped += 1;
                    done += 1;
                    continue;
                }
                done += n as usize;
                result.sent += n as usize;
            }
        }
        self.data.clear();
        self.messages.clear();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn many_destinations_in_one_flush() {
        let receivers: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = BatchSender::new();
        for i in 0..30u8 {
            let r = &receivers[usize::from(i) % 3];
            batch.push(r.local_addr().unwrap(), &[i; 20]);
        }
        assert_eq!(batch.len(), 30);
        assert_eq!(
            batch.flush(&sender),
            Flushed {
                sent: 30,
                dropped: 0
            }
        );
        assert!(batch.is_empty());
        for (k, r) in receivers.iter().enumerate() {
            r.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            let mut buf = [0u8; 64];
            for j in 0..10 {
                let (n, from) = r.recv_from(&mut buf).unwrap();
                assert_eq!((n, from), (20, sender.local_addr().unwrap()));
                assert_eq!(buf[0] as usize, k + 3 * j);
            }
        }
    }
}
