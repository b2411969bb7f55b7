//! The processes of this machine as /proc shows them: state, parent and CPU time (payctl's own too).

/// What payctl reads of a process's `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub pid: u32,
    /// R running, S sleeping, T stopped (SIGSTOP), Z zombie, …
    pub state: char,
    pub ppid: u32,
    /// User and system CPU time so far, in clock ticks.
    pub ticks: u64,
}

fn parse(pid: u32, stat: &str) -> Option<Stat> {
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        pid,
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        ticks: f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
    })
}

/// One process, if it exists.
pub fn stat(pid: u32) -> Option<Stat> {
    parse(
        pid,
        &std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?,
    )
}

/// Clock ticks per second, the unit of `Stat::ticks` and of /proc/stat.
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// CPU time (user + system, every thread) this process has used so far.
pub fn own_cpu() -> std::time::Duration {
    stat(std::process::id()).map_or(std::time::Duration::ZERO, |s| {
        std::time::Duration::from_secs_f64(s.ticks as f64 / ticks_per_second())
    })
}

/// Every process of this machine.
pub fn processes() -> Vec<Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| stat(e.file_name().to_str()?.parse().ok()?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_state_parent_and_cpu_time_past_a_name_with_spaces() {
        let s = parse(
            42,
            "42 (a (b) c) S 7 42 42 0 -1 4194304 100 0 0 0 5 3 0 0 20 0",
        )
        .unwrap();
        assert_eq!((s.pid, s.state, s.ppid, s.ticks), (42, 'S', 7, 8));
        let me = stat(std::process::id()).unwrap();
        assert!(matches!(me.state, 'R' | 'S'), "{me:?}");
        assert!(processes().iter().any(|p| p.pid == me.ppid));
        // Busy until the kernel's own clock of this process' CPU time has grown by 300 ms (however
        // loaded the machine: a wall-clock loop gets little CPU on a busy one); /proc must say as much.
        let process_cpu = || {
            let mut t = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime writes one timespec we own.
            assert_eq!(
                unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) },
                0
            );
            std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
        };
        let (before, reference) = (own_cpu(), process_cpu());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut x = 0u64;
        while process_cpu() - reference < std::time::Duration::from_millis(300) {
            assert!(std::time::Instant::now() < deadline, "no CPU time in 60 s");
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let (used, expected) = (own_cpu() - before, process_cpu() - reference);
        // /proc counts whole clock ticks (10 ms) and both reads are not at the same instant.
        let slack = std::time::Duration::from_millis(60);
        assert!(
            used + slack >= expected && used <= expected + slack,
            "/proc says {used:?}, the process clock {expected:?}"
        );
    }
}
