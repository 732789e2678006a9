//! The crate's only unsafe code: the Linux system calls the standard library does not wrap.
//! Each block says why it is sound.
//!
//! - [`udp_batch`]: datagrams received and sent in batches (`recvmmsg`, `sendmmsg`), one system
//!   call for up to [`udp_batch::BATCH`] datagrams each way instead of one per datagram: the
//!   DNS door's UDP path (`dns`).
//! - [`raise_open_files_limit`]: `setrlimit`, so the doors' connection bounds, not the
//!   default descriptor limit, decide how many clients a node holds.
//! - [`send_signal`]: `kill(2)`, for tests and harnesses that stop nodes.
//! - [`release_freed_memory`]: `malloc_trim`, handing freed heap back to the OS after a large
//!   zone is loaded.
#![allow(unsafe_code)]

/// Hands memory freed after a load back to the OS. Parsing a large zone file allocates
/// several times the zone's final size in short-lived parse trees; glibc keeps those pages
/// in its arenas (the process would otherwise sit at the parse's peak for ever).
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How often a long-running process hands freed memory back to the OS.
pub const MEMORY_TRIM_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Calls [`release_freed_memory`] every [`MEMORY_TRIM_INTERVAL`] until `shutdown`: memory a
/// burst of clients used (streams, sessions, buffers) goes back to the OS after they leave,
/// rather than staying in the allocator's arenas for ever.
pub fn trim_memory_periodically(
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(MEMORY_TRIM_INTERVAL) => {}
            }
            let _ = tokio::task::spawn_blocking(release_freed_memory).await;
        }
    })
}

/// Sends `signal` (such as `libc::SIGINT`) to the process `pid`: how tests and the
/// availability harness stop a node the way an operator's Ctrl-C or an OOM kill would.
#[cfg(unix)]
pub fn send_signal(pid: u32, signal: i32) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let result = unsafe { libc::kill(pid, signal) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Raises this process's soft limit of open files to its hard limit (servers hold a socket
/// per client; the usual soft default of 1,024 is far below what the doors bound connections
/// to). Returns the limit now in force.
#[cfg(unix)]
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own, of the type it expects.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own; raising the soft limit up to the hard
        // one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

/// Datagrams received and sent in batches.
#[cfg(target_os = "linux")]
pub mod udp_batch {
    use std::net::SocketAddr;
    use std::os::fd::{AsRawFd, RawFd};

    use tokio::io::Interest;
    use tokio::net::UdpSocket;

    /// Datagrams per system call.
    pub const BATCH: usize = 32;
    /// Large enough for any datagram, so an oversized query is seen whole and answered.
    const DATAGRAM_MAX: usize = 65_535;

    /// Receive-side buffers and the kernel's message headers pointing into them.
    pub struct Inbox {
        buffers: Vec<u8>,
        peers: Vec<libc::sockaddr_storage>,
        iovecs: Vec<libc::iovec>,
        headers: Vec<libc::mmsghdr>,
    }

    // SAFETY: the raw pointers in `iovecs` and `headers` point into this struct's own heap
    // buffers, which never move or resize; the struct is used by one task at a time.
    unsafe impl Send for Inbox {}

    impl Inbox {
        pub fn new() -> Box<Inbox> {
            // SAFETY: all-zero is a valid value of this plain C struct.
            let zeroed_peer: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            let zeroed_header: libc::mmsghdr = unsafe { std::mem::zeroed() };
            let mut inbox = Box::new(Inbox {
                buffers: vec![0u8; BATCH * DATAGRAM_MAX],
                peers: vec![zeroed_peer; BATCH],
                iovecs: Vec::with_capacity(BATCH),
                headers: vec![zeroed_header; BATCH],
            });
            let base = inbox.buffers.as_mut_ptr();
            for index in 0..BATCH {
                inbox.iovecs.push(libc::iovec {
                    // SAFETY: index * DATAGRAM_MAX is within `buffers`.
                    iov_base: unsafe { base.add(index * DATAGRAM_MAX) }.cast(),
                    iov_len: DATAGRAM_MAX,
                });
            }
            inbox
        }

        /// Points every header at its buffer and peer slot, ready for `recvmmsg`.
        fn arm(&mut self) {
            for index in 0..BATCH {
                let header = &mut self.headers[index].msg_hdr;
                header.msg_name = (&mut self.peers[index] as *mut libc::sockaddr_storage).cast();
                header.msg_namelen =
                    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                header.msg_iov = &mut self.iovecs[index];
                header.msg_iovlen = 1;
                header.msg_control = std::ptr::null_mut();
                header.msg_controllen = 0;
                header.msg_flags = 0;
                self.headers[index].msg_len = 0;
            }
        }

        /// Receives up to BATCH datagrams without blocking.
        pub fn receive(&mut self, fd: RawFd) -> std::io::Result<usize> {
            self.arm();
            // SAFETY: the headers point at live buffers owned by self, sized as declared.
            let received = unsafe {
                libc::recvmmsg(
                    fd,
                    self.headers.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if received < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(received as usize)
        }

        pub fn datagram(&self, index: usize) -> &[u8] {
            let len = (self.headers[index].msg_len as usize).min(DATAGRAM_MAX);
            let start = index * DATAGRAM_MAX;
            &self.buffers[start..start + len]
        }

        pub fn peer(&self, index: usize) -> Option<SocketAddr> {
            let storage = &self.peers[index];
            let len = self.headers[index].msg_hdr.msg_namelen as usize;
            match i32::from(storage.ss_family) {
                libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
                    // SAFETY: the kernel wrote a sockaddr_in here (family and length checked).
                    let v4: &libc::sockaddr_in = unsafe { &*(storage as *const _ as *const _) };
                    Some(SocketAddr::from((
                        std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                        u16::from_be(v4.sin_port),
                    )))
                }
                libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
                    // SAFETY: the kernel wrote a sockaddr_in6 here (family and length checked).
                    let v6: &libc::sockaddr_in6 = unsafe { &*(storage as *const _ as *const _) };
                    Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                        std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr),
                        u16::from_be(v6.sin6_port),
                        v6.sin6_flowinfo,
                        v6.sin6_scope_id,
                    )))
                }
                _ => None,
            }
        }
    }

    /// One `sendmmsg` of `batch` without blocking: how many datagrams the kernel took.
    pub fn try_send_batch(
        socket: &UdpSocket,
        batch: &[(Vec<u8>, SocketAddr)],
    ) -> std::io::Result<usize> {
        let peers: Vec<socket2::SockAddr> = batch
            .iter()
            .map(|(_, peer)| socket2::SockAddr::from(*peer))
            .collect();
        let mut iovecs: Vec<libc::iovec> = batch
            .iter()
            .map(|(bytes, _)| libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            })
            .collect();
        // SAFETY: all-zero is a valid mmsghdr; the fields set below point at `peers` and
        // `iovecs`, which outlive the call.
        let mut headers: Vec<libc::mmsghdr> = (0..batch.len())
            .map(|_| unsafe { std::mem::zeroed::<libc::mmsghdr>() })
            .collect();
        for (index, header) in headers.iter_mut().enumerate() {
            // sendmmsg only reads the address.
            header.msg_hdr.msg_name = peers[index].as_ptr() as *mut libc::c_void;
            header.msg_hdr.msg_namelen = peers[index].len();
            header.msg_hdr.msg_iov = &mut iovecs[index];
            header.msg_hdr.msg_iovlen = 1;
        }
        socket.try_io(Interest::WRITABLE, || {
            // SAFETY: headers, peers and iovecs are alive and consistent.
            let count = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    headers.as_mut_ptr(),
                    headers.len() as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if count < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(count as usize)
            }
        })
    }
}
