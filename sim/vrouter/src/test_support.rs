//! Helpers the data planes' unit tests share.

/// A frame as hex, sixteen bytes a line, indented: the packet walks' snapshot format.
pub(crate) fn hex(frame: &[u8]) -> String {
    frame
        .chunks(16)
        .map(|line| {
            format!("    {}\n", line.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "))
        })
        .collect()
}
