//! The TCP state machine of a tracked connection, from the flags (and the
//! handshake's sequence numbers) of each segment and the direction it went.
//! A segment that does not fit the state is invalid and changes nothing.

use super::packet::{ACK, FIN, RST, SYN};

/// Where a TCP connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// The originator sent SYN.
    SynSent,
    /// The responder answered SYN-ACK.
    SynRecv,
    /// The originator acknowledged the SYN-ACK.
    Established,
    /// One side sent FIN.
    FinWait,
    /// The other side acknowledged that FIN.
    CloseWait,
    /// The other side sent its FIN too.
    LastAck,
    /// The last FIN was acknowledged.
    TimeWait,
    /// A RST ended it.
    Closed,
}

impl TcpState {
    /// The name `sdn conntrack` shows (as Linux conntrack names its states).
    pub fn name(self) -> &'static str {
        match self {
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Closed => "CLOSED",
        }
    }
}

/// TCP tracking of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpTrack {
    /// Current state.
    pub state: TcpState,
    /// Initial sequence number of the originator (the SYN-ACK must ack it + 1).
    isn: u32,
    /// Which side sent the first FIN (true: the originator).
    fin_by_orig: bool,
}

/// Whether a segment is a first SYN that may open a connection.
pub fn is_opening_syn(flags: u8) -> bool {
    flags & (SYN | ACK | RST | FIN) == SYN
}

impl TcpTrack {
    /// Tracking opened by the originator's SYN with sequence number `seq`.
    pub fn open(seq: u32) -> TcpTrack {
        TcpTrack {
            state: TcpState::SynSent,
            isn: seq,
            fin_by_orig: false,
        }
    }

    /// Feeds a segment sent by the originator (`orig`) or the responder;
    /// returns false (changing nothing) if it does not fit the state.
    pub fn update(&mut self, orig: bool, flags: u8, ack: u32) -> bool {
        use TcpState::*;
        let syn = flags & SYN != 0;
        let has_ack = flags & ACK != 0;
        let fin = flags & FIN != 0;
        if flags & RST != 0 {
            // A RST ends any connection past its first SYN; a RST answering
            // the SYN must come from the responder.
            if self.state == SynSent && orig {
                return false;
            }
            self.state = Closed;
            return true;
        }
        let next = match (self.state, orig) {
            (SynSent, true) if is_opening_syn(flags) => SynSent,
            (SynSent, false) if syn && has_ack && ack == self.isn.wrapping_add(1) => SynRecv,
            (SynSent, _) => return false,
            (SynRecv, true) if is_opening_syn(flags) => SynRecv,
            (SynRecv, false) if syn && has_ack => SynRecv,
            (SynRecv, true) if has_ack && !syn => {
                if fin {
                    self.fin_by_orig = true;
                    FinWait
                } else {
                    Established
                }
            }
            (SynRecv, _) => return false,
            (_, _) if syn || !has_ack => return false,
            (Established, _) if fin => {
                self.fin_by_orig = orig;
                FinWait
            }
            (Established, _) => Established,
            (FinWait | CloseWait, side) if side != self.fin_by_orig && fin => LastAck,
            (FinWait, side) if side != self.fin_by_orig => CloseWait,
            (state @ (FinWait | CloseWait), _) => state,
            (LastAck, side) if side == self.fin_by_orig => TimeWait,
            (LastAck, _) => LastAck,
            (TimeWait, _) => TimeWait,
            (Closed, _) => return false,
        };
        self.state = next;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_data_and_close() {
        let mut t = TcpTrack::open(100);
        assert!(t.update(false, SYN | ACK, 101));
        assert_eq!(t.state, TcpState::SynRecv);
        assert!(t.update(true, ACK, 501));
        assert_eq!(t.state, TcpState::Established);
        assert!(t.update(false, ACK, 101));
        assert!(t.update(true, FIN | ACK, 501));
        assert_eq!(t.state, TcpState::FinWait);
        assert!(t.update(false, ACK, 102));
        assert_eq!(t.state, TcpState::CloseWait);
        assert!(t.update(false, FIN | ACK, 102));
        assert_eq!(t.state, TcpState::LastAck);
        assert!(t.update(true, ACK, 502));
        assert_eq!(t.state, TcpState::TimeWait);
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let mut t = TcpTrack::open(100);
        // Data before the handshake.
        assert!(!t.update(true, ACK, 1));
        // A SYN-ACK for another SYN.
        assert!(!t.update(false, SYN | ACK, 5));
        assert_eq!(t.state, TcpState::SynSent);
        assert!(t.update(false, SYN | ACK, 101));
        // A bare segment without ACK after the handshake started.
        assert!(!t.update(true, 0, 0));
        assert!(t.update(true, ACK, 1));
        assert!(!t.update(true, SYN, 0));
        assert!(t.update(false, RST, 0));
        assert_eq!(t.state, TcpState::Closed);
        assert!(!t.update(true, ACK, 0));
    }

    #[test]
    fn refused_connection() {
        let mut t = TcpTrack::open(9);
        assert!(!t.update(true, RST, 0));
        assert!(t.update(false, RST | ACK, 10));
        assert_eq!(t.state, TcpState::Closed);
    }
}
