//! Per-device clock offset estimates: a sliding-window minimum of
//! `receive time − span end`, in a fixed number of slots per device, and
//! the bounded device table they live in.

use std::collections::HashMap;

/// Slots per device: the window is cut into this many sub-windows, each
/// keeping the smallest sample it saw (NTP's clock filter keeps 8 samples
/// too).
pub(super) const SLOTS: usize = 8;

/// One device's samples.
#[derive(Debug, Clone)]
struct Device {
    /// (sub-window number, smallest sample in it), `None` when empty.
    slots: [Option<(i64, i64)>; SLOTS],
    /// When the device was last seen, for eviction.
    last_seen: u64,
}

/// The devices' estimates; at most `max_devices`, the least recently seen
/// evicted first.
#[derive(Debug)]
pub(super) struct Estimates {
    devices: HashMap<String, Device>,
    max_devices: usize,
    /// Sub-window width, ns.
    slot_ns: i64,
    /// A counter of updates, as the recency of a device.
    tick: u64,
}

impl Estimates {
    pub(super) fn new(window_ns: i64, max_devices: usize) -> Self {
        Estimates {
            devices: HashMap::new(),
            max_devices,
            slot_ns: (window_ns / SLOTS as i64).max(1),
            tick: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.devices.len()
    }

    /// Records `sample` (receive time − span end, ns) for `device`, received
    /// at `now_ns`. Returns how many devices were evicted to make room: when
    /// a new device arrives at a full table, the least recently seen eighth
    /// goes at once, so a stream of new devices costs one scan per eighth
    /// of the table, not one per device.
    pub(super) fn observe(&mut self, device: &str, now_ns: i64, sample: i64) -> usize {
        self.tick += 1;
        let slot_no = now_ns.div_euclid(self.slot_ns);
        let mut evicted = 0;
        if !self.devices.contains_key(device) && self.devices.len() >= self.max_devices {
            let mut seen: Vec<(u64, &String)> =
                self.devices.iter().map(|(k, d)| (d.last_seen, k)).collect();
            let n = (self.max_devices / 8).max(1).min(seen.len());
            if n > 0 {
                seen.select_nth_unstable(n - 1);
                let oldest: Vec<String> = seen[..n].iter().map(|(_, k)| (*k).clone()).collect();
                for k in oldest {
                    self.devices.remove(&k);
                }
                evicted = n;
            }
        }
        let d = self
            .devices
            .entry(device.to_string())
            .or_insert_with(|| Device {
                slots: [None; SLOTS],
                last_seen: 0,
            });
        d.last_seen = self.tick;
        let at = usize::try_from(slot_no.rem_euclid(SLOTS as i64)).unwrap_or(0);
        d.slots[at] = match d.slots[at] {
            Some((n, min)) if n == slot_no => Some((n, min.min(sample))),
            _ => Some((slot_no, sample)),
        };
        evicted
    }

    /// The device's offset estimate at `now_ns`: the smallest sample of the
    /// sub-windows still in the window, or `None` without one.
    pub(super) fn offset(&self, device: &str, now_ns: i64) -> Option<i64> {
        let slot_no = now_ns.div_euclid(self.slot_ns);
        self.devices
            .get(device)?
            .slots
            .iter()
            .flatten()
            .filter(|(n, _)| slot_no - n < SLOTS as i64)
            .map(|(_, min)| *min)
            .min()
    }
}
