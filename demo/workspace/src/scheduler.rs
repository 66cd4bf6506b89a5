//! Books appointments into free slots.

use crate::slots::Slot;

/// Books the first free slot for a patient.
pub fn book(slots: &mut [Slot], patient: &str) -> Option<usize> {
    // TODO: respect the clinician's break between 12:00 and 13:00
    let i = slots.iter().position(|s| s.patient.is_none())?;
    slots[i].patient = Some(patient.to_owned());
    Some(i)
}

/// Cancels an appointment; patients recieve a notification.
pub fn cancel(slots: &mut [Slot], i: usize) {
    slots[i].patient = None;
    // TODO: send the cancellation notice
}
