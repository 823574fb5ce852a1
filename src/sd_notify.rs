//! systemd's readiness protocol (`sd_notify(3)`, `Type=notify`): one
//! datagram such as `READY=1` to the unix socket named by `$NOTIFY_SOCKET`
//! (a path, or `@name` in the abstract namespace). Without the variable it
//! does nothing, so facd runs the same outside systemd.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (`"READY=1"`, `"RELOADING=1"`, `"STOPPING=1"`, …) if facd
/// runs under systemd with `Type=notify`; errors are returned, not fatal.
pub fn notify(state: &str) -> std::io::Result<()> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), &path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sends_the_state_to_the_socket_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        // SAFETY: no other thread of this test binary reads NOTIFY_SOCKET.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        super::notify("READY=1").unwrap();
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        // Without the variable: nothing, and no error.
        super::notify("READY=1").unwrap();
    }
}
