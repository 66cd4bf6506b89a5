//! Appointment slots.

/// One fifteen-minute slot.
pub struct Slot {
    pub start: &'static str,
    pub patient: Option<String>,
}
