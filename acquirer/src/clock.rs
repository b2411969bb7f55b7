//! Where "now" comes from: the system clock, or a time a test fixes, so a test can settle at 14:59:59Z
//! and at 15:00:00Z, either side of Seoul's midnight, and see each on its own day's statement. Nothing
//! outside the tests fixes it; there is no route to.

use std::sync::Mutex;
use time::OffsetDateTime;

#[derive(Debug, Default)]
pub struct Clock {
    fixed: Mutex<Option<OffsetDateTime>>,
}

impl Clock {
    /// Now (to the microsecond `settled_at` keeps), or the fixed time.
    pub fn now(&self) -> OffsetDateTime {
        let fixed = *self.fixed.lock().unwrap_or_else(|p| p.into_inner());
        fixed.unwrap_or_else(crate::store::now)
    }

    /// Fixes the time (`None`: the system clock again).
    pub fn fix(&self, at: Option<OffsetDateTime>) {
        *self.fixed.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }
}
