//! Agent protocol (docs/agent-protocol.md), answered by the ring-3 runner.
//! Placeholder until the protocol document lands.
pub const VERSION = "none";

pub fn handles(l: []const u8) bool {
    _ = l;
    return false;
}

pub fn handle(l: []const u8) void {
    _ = l;
}
