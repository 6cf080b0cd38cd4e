//! API state-machine fuzzer (issue 10, item 5): random sequences of public
//! API operations over one runtime, spread over three threads (this driver
//! and two workers), each result checked against a model of which results
//! are allowed.
//!
//! * **Slots**: main plus up to four live subinterpreters (isolated or
//!   legacy: shared GIL, main's heap), seven in all per case.
//! * **Operations**: create; work inside an interpreter (allocate, build
//!   cyclic garbage and random graphs, keep an object as an `Owned`, release
//!   a kept object under a GIL, collect generation 0..=2, checkpoint); add a
//!   pending call (some panic); interrupt; drop an `Owned` from a thread in
//!   any state (holding the owner's GIL: freed at once; otherwise queued as a
//!   pending call of the owner); close (from outside, from inside the
//!   interpreter, from inside another, from `allow_threads`); a worker
//!   enters an interpreter and stays (holding its GIL, or detached in
//!   `allow_threads`) until told to leave; finally the runtime is dropped
//!   while workers may still be inside, and they leave one by one.
//! * **The model**: per interpreter the FIFO pending queue (our calls and the
//!   queued `Owned` releases), the interrupt flag, the threads inside; per
//!   kept object whether it must be alive, must be freed or may be freed
//!   (released cyclic garbage before a full collection); per pending call
//!   whether it must have run (exactly once, in its interpreter) or must not.
//!   Every close result is predicted exactly (`InterpreterClosed`,
//!   `MainHasSubinterpreters { remaining }`, `CannotCloseCurrent`,
//!   `InterpreterRunning { threads }`, or a report whose pending-call count,
//!   pending-call errors and leaks are known: no leak, since only tracked
//!   objects are ever kept).
//! * **Deterministic schedule**: workers act only on a command and answer
//!   before the driver goes on. An operation whose thread would wait for a
//!   GIL another thread holds is not issued (the model says when: an own
//!   GIL held by another thread, or the shared GIL of main and the legacy
//!   interpreters), so nothing ever waits on a worker. The only timed wait
//!   is the 30 s hang guard on a worker's answer, which fails the test.
//!
//! `PROPTEST_CASES` sets the number of cases (default 500). At 200 cases or
//! more the test also checks that every interesting outcome was reached at
//! least once (so coverage cannot silently disappear when a generator or the
//! model changes).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestError, TestRunner};
use subinterp::{
    trace_fields, CloseReport, Error, Gil, GilMode, Interpreter, InterpreterConfig, InterpreterState, Member, Owned,
    Runtime, RuntimeConfig,
};

const MAX_LIVE_SUBS: usize = 4;
const MAX_SLOTS: usize = 7;
const MAX_OBJECTS: usize = 48;
const MAX_CALLS: usize = 48;
/// Threads: 0 is the driver, 1 and 2 are workers.
const THREADS: usize = 3;
const HANG: Duration = Duration::from_secs(30);
/// The payload of every panic this test plans (silenced in the panic hook).
const PANIC_TAG: &str = "api-fuzz: planned panic";

// ----- generated input ------------------------------------------------------------------

/// One step of work done under an interpreter's GIL.
#[derive(Debug, Clone)]
enum Step {
    /// Allocate `n` heap blocks (small or large), fill, check, free.
    Alloc {
        n: u8,
        large: bool,
    },
    /// `n` two-list cycles, dropped at once (cyclic garbage).
    Garbage {
        n: u8,
    },
    /// Lists with random edges between them, all dropped.
    Graph {
        nodes: u8,
        edges: Vec<(u8, u8)>,
    },
    /// Keep a new tracked object as an `Owned` (an embedder object whose
    /// drop is counted, alone or in a list, cyclic or not).
    Keep {
        cyclic: bool,
        in_list: bool,
    },
    /// Drop a kept `Owned` under this GIL.
    Release {
        which: u8,
    },
    Collect {
        generation: u8,
    },
    Checkpoint,
}

/// One operation; indices are taken modulo what exists when it runs.
#[derive(Debug, Clone)]
enum Op {
    Create {
        t: u8,
        legacy: bool,
    },
    Work {
        t: u8,
        slot: u8,
        steps: Vec<Step>,
    },
    Pending {
        t: u8,
        slot: u8,
        panics: bool,
    },
    /// Interrupt, or withdraw an interrupt no checkpoint has seen.
    Interrupt {
        t: u8,
        slot: u8,
        cancel: bool,
    },
    DropOwned {
        t: u8,
        which: u8,
    },
    /// Close main (`main`) or a subinterpreter, through its handle or by
    /// id (`Runtime::close`).
    Close {
        t: u8,
        slot: u8,
        main: bool,
        by_id: bool,
    },
    Enter {
        w: u8,
        slot: u8,
        detached: bool,
    },
    Leave {
        w: u8,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (1u8..8, proptest::bool::weighted(0.3)).prop_map(|(n, large)| Step::Alloc { n, large }),
        2 => (1u8..6).prop_map(|n| Step::Garbage { n }),
        1 => (1u8..8, proptest::collection::vec((any::<u8>(), any::<u8>()), 0..12))
            .prop_map(|(nodes, edges)| Step::Graph { nodes, edges }),
        3 => (any::<bool>(), any::<bool>()).prop_map(|(cyclic, in_list)| Step::Keep { cyclic, in_list }),
        2 => any::<u8>().prop_map(|which| Step::Release { which }),
        2 => (0u8..3).prop_map(|generation| Step::Collect { generation }),
        3 => Just(Step::Checkpoint),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let t = 0u8..THREADS as u8;
    prop_oneof![
        3 => (t.clone(), proptest::bool::weighted(0.4)).prop_map(|(t, legacy)| Op::Create { t, legacy }),
        7 => (t.clone(), any::<u8>(), proptest::collection::vec(step(), 1..6))
            .prop_map(|(t, slot, steps)| Op::Work { t, slot, steps }),
        3 => (t.clone(), any::<u8>(), proptest::bool::weighted(0.2))
            .prop_map(|(t, slot, panics)| Op::Pending { t, slot, panics }),
        2 => (t.clone(), any::<u8>(), proptest::bool::weighted(0.25))
            .prop_map(|(t, slot, cancel)| Op::Interrupt { t, slot, cancel }),
        2 => (t.clone(), any::<u8>()).prop_map(|(t, which)| Op::DropOwned { t, which }),
        3 => (t, any::<u8>(), proptest::bool::weighted(0.15), proptest::bool::weighted(0.3))
            .prop_map(|(t, slot, main, by_id)| Op::Close { t, slot, main, by_id }),
        3 => (1u8..THREADS as u8, any::<u8>(), any::<bool>())
            .prop_map(|(w, slot, detached)| Op::Enter { w, slot, detached }),
        2 => (1u8..THREADS as u8).prop_map(|w| Op::Leave { w }),
    ]
}

// ----- what the threads run ---------------------------------------------------------------

/// Counters the objects and pending calls write, read by the driver.
struct Counters {
    /// Drops of each kept object's embedder value.
    drops: Vec<AtomicUsize>,
    /// Runs of each pending call.
    runs: Vec<AtomicUsize>,
    /// 1 + the id of the interpreter each pending call last ran in.
    ran_in: Vec<AtomicU64>,
}

impl Counters {
    fn new() -> Arc<Self> {
        Arc::new(Counters {
            drops: (0..MAX_OBJECTS).map(|_| AtomicUsize::new(0)).collect(),
            runs: (0..=MAX_CALLS).map(|_| AtomicUsize::new(0)).collect(),
            ran_in: (0..=MAX_CALLS).map(|_| AtomicU64::new(0)).collect(),
        })
    }
}

/// A kept object's embedder value: counts its drop.
struct Sentinel {
    obj: usize,
    counters: Arc<Counters>,
    next: Member,
}
trace_fields!(Sentinel { next });

impl Drop for Sentinel {
    fn drop(&mut self) {
        self.counters.drops[self.obj].fetch_add(1, Ordering::SeqCst);
    }
}

/// A step as sent to the executing thread.
enum RtStep {
    Alloc { n: u8, large: bool },
    Garbage { n: u8 },
    Graph { nodes: u8, edges: Vec<(u8, u8)> },
    Keep { obj: usize, cyclic: bool, in_list: bool },
    Release(Owned),
    Collect(usize),
    Checkpoint,
}

#[derive(Debug)]
enum StepOut {
    Done,
    /// Whether every allocated block kept its contents.
    Alloc(bool),
    Kept(Owned),
    Collected(usize),
}

enum Action {
    Create(InterpreterConfig),
    Work {
        interp: Interpreter,
        steps: Vec<RtStep>,
    },
    Pending {
        interp: Interpreter,
        call: usize,
        panics: bool,
    },
    Interrupt(Interpreter),
    /// `InterruptHandle::cancel`: answers whether a request was withdrawn.
    Cancel(Interpreter),
    Drop(Owned),
    Close(Interpreter),
    CloseById(u64),
}

#[derive(Debug)]
enum Outcome {
    Created(subinterp::Result<Interpreter>),
    Worked(subinterp::Result<Vec<subinterp::Result<StepOut>>>),
    Unit(subinterp::Result<()>),
    Cancelled(bool),
    Closed(subinterp::Result<CloseReport>),
}

fn run_step<'i>(g: Gil<'i>, step: RtStep, c: &Arc<Counters>) -> subinterp::Result<StepOut> {
    match step {
        RtStep::Alloc { n, large } => {
            let mut ok = true;
            for i in 0..n as usize {
                let size = if large { 600 + 331 * i } else { 16 + (37 * i) % 497 };
                let mut b = g.alloc(size)?;
                b.as_mut_slice().fill(i as u8 ^ 0x5a);
                ok &= b.as_slice().iter().all(|&x| x == i as u8 ^ 0x5a);
            }
            Ok(StepOut::Alloc(ok))
        }
        RtStep::Garbage { n } => {
            for _ in 0..n {
                let a = g.list(&[])?;
                let b = g.list(std::slice::from_ref(&a))?;
                a.list_append(&b)?;
            }
            Ok(StepOut::Done)
        }
        RtStep::Graph { nodes, edges } => {
            let nodes: Vec<_> = (0..nodes.max(1)).map(|_| g.list(&[])).collect::<subinterp::Result<_>>()?;
            for (a, b) in edges {
                let (a, b) = (a as usize % nodes.len(), b as usize % nodes.len());
                nodes[a].list_append(&nodes[b])?;
            }
            Ok(StepOut::Done)
        }
        RtStep::Keep { obj, cyclic, in_list } => {
            let s = g.new_object(Sentinel { obj, counters: c.clone(), next: Member::empty() })?;
            let top = if in_list { g.list(std::slice::from_ref(&s))? } else { s.clone() };
            if cyclic {
                s.downcast_ref::<Sentinel>().expect("a sentinel").next.set(g, Some(&top))?;
            }
            Ok(StepOut::Kept(top.to_owned()))
        }
        RtStep::Release(owned) => {
            drop(owned);
            Ok(StepOut::Done)
        }
        RtStep::Collect(generation) => g.gc_collect(generation).map(|r| StepOut::Collected(r.collected)),
        RtStep::Checkpoint => g.checkpoint().map(|()| StepOut::Done),
    }
}

/// Runs one action on the calling thread, in whatever state it is in.
fn exec(action: Action, rt: &Runtime, c: &Arc<Counters>) -> Outcome {
    match action {
        Action::Create(config) => Outcome::Created(rt.create(config)),
        Action::Work { interp, steps } => {
            Outcome::Worked(interp.with_gil(|g| steps.into_iter().map(|s| run_step(g, s, c)).collect()))
        }
        Action::Pending { interp, call, panics } => {
            let c = c.clone();
            Outcome::Unit(interp.add_pending_call(move |g| {
                c.runs[call].fetch_add(1, Ordering::SeqCst);
                c.ran_in[call].store(g.id() + 1, Ordering::SeqCst);
                if panics {
                    std::panic::panic_any(PANIC_TAG);
                }
            }))
        }
        Action::Interrupt(interp) => Outcome::Unit(interp.interrupt_handle().interrupt()),
        Action::Cancel(interp) => Outcome::Cancelled(interp.interrupt_handle().cancel()),
        Action::Drop(owned) => {
            drop(owned);
            Outcome::Unit(Ok(()))
        }
        Action::Close(interp) => Outcome::Closed(interp.close()),
        Action::CloseById(id) => Outcome::Closed(rt.close(id)),
    }
}

enum Cmd {
    Exec(Action),
    Enter { interp: Interpreter, detached: bool },
    Leave,
}

enum Reply {
    Done(Outcome),
    Entered(subinterp::Result<()>),
    Left,
}

/// A worker thread: runs commands from outside, or enters an interpreter
/// and serves commands from inside until told to leave.
fn worker(mut rx: Receiver<Cmd>, tx: Sender<Reply>, rt: Arc<Mutex<Option<Runtime>>>, c: Arc<Counters>) {
    while let Ok(cmd) = rx.recv() {
        match cmd {
            Cmd::Exec(a) => answer(a, &tx, &rt, &c),
            Cmd::Enter { interp, detached } => {
                let rxm = &mut rx;
                let txr = &tx;
                let rt2 = rt.clone();
                let c2 = c.clone();
                let r = interp.with_gil(move |g| {
                    let serve = move || {
                        let rx = rxm;
                        let _ = txr.send(Reply::Entered(Ok(())));
                        serve_inside(rx, txr, &rt2, &c2);
                    };
                    if detached {
                        g.allow_threads(serve);
                    } else {
                        serve();
                    }
                });
                match r {
                    Ok(()) => {
                        let _ = tx.send(Reply::Left);
                    }
                    Err(e) => {
                        let _ = tx.send(Reply::Entered(Err(e)));
                    }
                }
            }
            Cmd::Leave => {
                let _ = tx.send(Reply::Left);
            }
        }
    }
}

/// Runs one command and sends its outcome. The runtime sits behind a lock
/// because the driver drops it at the end of a case; it is taken for one
/// command at a time, never across a wait for the driver.
fn answer(a: Action, tx: &Sender<Reply>, rt: &Mutex<Option<Runtime>>, c: &Arc<Counters>) {
    let out = match &*rt.lock().unwrap() {
        Some(rt) => exec(a, rt, c),
        None => Outcome::Unit(Err(Error::ThreadExiting)),
    };
    let _ = tx.send(Reply::Done(out));
}

/// Answers commands while inside an interpreter; returns on `Leave` (or
/// when the driver is gone).
fn serve_inside(rx: &mut Receiver<Cmd>, tx: &Sender<Reply>, rt: &Mutex<Option<Runtime>>, c: &Arc<Counters>) {
    while let Ok(cmd) = rx.recv() {
        match cmd {
            Cmd::Exec(a) => answer(a, tx, rt, c),
            Cmd::Leave => return,
            Cmd::Enter { .. } => {
                let _ = tx.send(Reply::Entered(Err(Error::ThreadExiting)));
            }
        }
    }
}

// ----- the model ----------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    Outside,
    Holding(usize),
    Detached(usize),
}

#[derive(Debug, Clone, Copy)]
enum Entry {
    Call(usize),
    Release(usize),
}

struct SlotM {
    interp: Interpreter,
    legacy: bool,
    closed: bool,
    /// Close requested by the runtime's drop, performed by the last thread out.
    deferred: bool,
    queue: VecDeque<Entry>,
    interrupted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    /// An `Owned` holds it.
    Held,
    /// Its release is queued as a pending call of its interpreter.
    Queued,
    /// Released, cyclic: collectable garbage; freed by a full collection
    /// at the latest, perhaps earlier by an automatic one.
    Garbage,
    /// Must have been freed, exactly once.
    Dead,
}

struct ObjM {
    slot: usize,
    cyclic: bool,
    /// Two tracked objects (a list holding the sentinel), not one.
    in_list: bool,
    life: Life,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallLife {
    Refused,
    Queued,
    Ran,
}

struct CallM {
    slot: usize,
    panics: bool,
    life: CallLife,
}

/// The expected result of an operation (`Err` compared by its `Debug` text).
type Want = Result<(), Error>;

fn closed_err(id: u64) -> Error {
    Error::InterpreterClosed { id }
}

fn brief<T>(r: &subinterp::Result<T>) -> Result<(), String> {
    r.as_ref().map(|_| ()).map_err(|e| format!("{e:?}"))
}

static COVERAGE: Mutex<BTreeMap<&'static str, usize>> = Mutex::new(BTreeMap::new());

struct Harness {
    rt: Arc<Mutex<Option<Runtime>>>,
    counters: Arc<Counters>,
    workers: Vec<(Sender<Cmd>, Receiver<Reply>)>,
    joins: Vec<std::thread::JoinHandle<()>>,
    slots: Vec<SlotM>,
    objs: Vec<ObjM>,
    calls: Vec<CallM>,
    /// Kept handles: (object index, handle).
    kept: Vec<(usize, Owned)>,
    at: [Where; THREADS],
    main_closed: bool,
    log: Vec<String>,
    seen: BTreeMap<&'static str, usize>,
}

impl Harness {
    fn new() -> Self {
        let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
        let main = rt.main();
        let rt = Arc::new(Mutex::new(Some(rt)));
        let counters = Counters::new();
        let mut workers = Vec::new();
        let mut joins = Vec::new();
        for w in 1..THREADS {
            let (ctx, crx) = mpsc::channel();
            let (rtx, rrx) = mpsc::channel();
            let (rt2, c2) = (rt.clone(), counters.clone());
            joins.push(
                std::thread::Builder::new()
                    .name(format!("fuzz-worker-{w}"))
                    .spawn(move || worker(crx, rtx, rt2, c2))
                    .expect("spawn a worker"),
            );
            workers.push((ctx, rrx));
        }
        let slots = vec![SlotM {
            interp: main,
            legacy: false,
            closed: false,
            deferred: false,
            queue: VecDeque::new(),
            interrupted: false,
        }];
        Harness {
            rt,
            counters,
            workers,
            joins,
            slots,
            objs: Vec::new(),
            calls: Vec::new(),
            kept: Vec::new(),
            at: [Where::Outside; THREADS],
            main_closed: false,
            log: Vec::new(),
            seen: BTreeMap::new(),
        }
    }

    fn see(&mut self, what: &'static str) {
        *self.seen.entry(what).or_default() += 1;
    }

    fn fail(&self, msg: String) -> ! {
        panic!("{msg}\n--- operations of this case (resolved) ---\n{}", self.log.join("\n"));
    }

    fn expect(&self, what: &str, got: Result<(), String>, want: &Want) {
        let want = want.as_ref().map(|_| ()).map_err(|e| format!("{e:?}"));
        if got != want {
            self.fail(format!("{what}: expected {want:?}, got {got:?}"));
        }
    }

    fn id(&self, s: usize) -> u64 {
        self.slots[s].interp.id()
    }

    /// Whether slot `s` runs under the shared GIL (main's, also legacy ones').
    fn shared(&self, s: usize) -> bool {
        s == 0 || self.slots[s].legacy
    }

    fn same_gil(&self, a: usize, b: usize) -> bool {
        a == b || (self.shared(a) && self.shared(b))
    }

    /// Whether thread `t` would wait for `s`'s GIL: another thread holds it.
    fn blocked(&self, t: usize, s: usize) -> bool {
        (0..THREADS).any(|u| u != t && matches!(self.at[u], Where::Holding(a) if self.same_gil(a, s)))
    }

    /// Threads other than `t` inside `s` (holding its GIL or detached).
    fn inside(&self, s: usize, t: usize) -> usize {
        (0..THREADS)
            .filter(|&u| u != t && matches!(self.at[u], Where::Holding(a) | Where::Detached(a) if a == s))
            .count()
    }

    fn live_subs(&self) -> usize {
        self.slots[1..].iter().filter(|s| !s.closed).count()
    }

    fn run(&mut self, t: usize, action: Action) -> Outcome {
        if t == 0 {
            let guard = self.rt.lock().unwrap();
            return exec(action, guard.as_ref().expect("runtime alive"), &self.counters);
        }
        self.workers[t - 1].0.send(Cmd::Exec(action)).expect("worker alive");
        match self.recv(t) {
            Reply::Done(o) => o,
            _ => self.fail(format!("worker {t}: unexpected reply")),
        }
    }

    fn recv(&self, t: usize) -> Reply {
        match self.workers[t - 1].1.recv_timeout(HANG) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => self.fail(format!("worker {t} did not answer in 30 s (hang)")),
            Err(RecvTimeoutError::Disconnected) => self.fail(format!("worker {t} died")),
        }
    }

    /// Applies a release of object `o` done by a thread holding the GIL of
    /// slot `holding` (if any).
    fn release(&mut self, o: usize, holding: Option<usize>) {
        let slot = self.objs[o].slot;
        if self.slots[slot].closed {
            return; // the close freed it; dropping the handle does nothing
        }
        if holding == Some(slot) {
            self.see("release under the owner's GIL");
            self.objs[o].life = if self.objs[o].cyclic { Life::Garbage } else { Life::Dead };
        } else {
            self.see("release queued as a pending call");
            self.objs[o].life = Life::Queued;
            self.slots[slot].queue.push_back(Entry::Release(o));
        }
    }

    /// Runs slot `s`'s queue as a checkpoint does: until a panicking call.
    fn run_queue(&mut self, s: usize, stop_at_panic: bool) -> (usize, usize) {
        let (mut ran, mut panics) = (0, 0);
        while let Some(e) = self.slots[s].queue.pop_front() {
            ran += 1;
            match e {
                Entry::Release(o) => {
                    self.objs[o].life = if self.objs[o].cyclic { Life::Garbage } else { Life::Dead };
                }
                Entry::Call(c) => {
                    self.calls[c].life = CallLife::Ran;
                    if self.calls[c].panics {
                        panics += 1;
                        if stop_at_panic {
                            break;
                        }
                    }
                }
            }
        }
        (ran, panics)
    }

    /// The model's side of a successful close of slot `s`: (pending calls
    /// run, planted panics among them, tracked objects the teardown frees).
    fn closed_now(&mut self, s: usize) -> (usize, usize, usize) {
        let (ran, panics) = self.run_queue(s, false);
        // The final collection frees the garbage; what is still held is
        // freed by the teardown (a sentinel, and its list if it has one).
        let held: usize =
            self.objs.iter().filter(|o| o.slot == s && o.life == Life::Held).map(|o| 1 + usize::from(o.in_list)).sum();
        self.slots[s].closed = true;
        self.slots[s].deferred = false;
        self.slots[s].interrupted = false;
        for o in self.objs.iter_mut().filter(|o| o.slot == s) {
            o.life = Life::Dead;
        }
        if s == 0 {
            self.main_closed = true;
        }
        (ran, panics, held)
    }

    /// Checks the real state against the model (after every operation).
    fn check(&self, rt_alive: bool) {
        if rt_alive {
            let want: Vec<u64> = (0..self.slots.len()).filter(|&s| !self.slots[s].closed).map(|s| self.id(s)).collect();
            let guard = self.rt.lock().unwrap();
            let rt = guard.as_ref().expect("runtime alive");
            let got = rt.ids();
            let lookups: Vec<_> = (0..self.slots.len()).map(|s| rt.get(self.id(s))).collect();
            drop(guard);
            if got != want {
                self.fail(format!("live ids: expected {want:?}, got {got:?}"));
            }
            for (s, found) in lookups.into_iter().enumerate() {
                let ok = match found {
                    Ok(i) => !self.slots[s].closed && i == self.slots[s].interp,
                    Err(Error::InterpreterNotFound { id }) => self.slots[s].closed && id == self.id(s),
                    Err(_) => false,
                };
                if !ok {
                    self.fail(format!("lookup of slot {s} (closed: {}) gave a wrong answer", self.slots[s].closed));
                }
            }
        }
        for (s, slot) in self.slots.iter().enumerate() {
            let want = if slot.closed { InterpreterState::Closed } else { InterpreterState::Ready };
            if slot.interp.state() != want {
                self.fail(format!("slot {s}: state {:?}, expected {want:?}", slot.interp.state()));
            }
        }
        for (i, o) in self.objs.iter().enumerate() {
            let d = self.counters.drops[i].load(Ordering::SeqCst);
            let ok = match o.life {
                Life::Held | Life::Queued => d == 0,
                Life::Garbage => d <= 1,
                Life::Dead => d == 1,
            };
            if !ok {
                self.fail(format!(
                    "object {i} (slot {}, cyclic {}): {:?} but dropped {d} times",
                    o.slot, o.cyclic, o.life
                ));
            }
        }
        for (i, c) in self.calls.iter().enumerate() {
            let runs = self.counters.runs[i].load(Ordering::SeqCst);
            let want = usize::from(c.life == CallLife::Ran);
            if runs != want {
                self.fail(format!("pending call {i} (slot {}): {:?} but ran {runs} times", c.slot, c.life));
            }
            let ran_in = self.counters.ran_in[i].load(Ordering::SeqCst);
            if c.life == CallLife::Ran && ran_in != self.id(c.slot) + 1 {
                self.fail(format!(
                    "pending call {i} ran in interpreter {}, not {}",
                    ran_in as i64 - 1,
                    self.id(c.slot)
                ));
            }
        }
    }

    fn apply(&mut self, op: &Op) {
        let n = self.slots.len();
        match *op {
            Op::Create { t, legacy } => {
                let t = t as usize;
                if !self.main_closed && (self.live_subs() >= MAX_LIVE_SUBS || n >= MAX_SLOTS) {
                    return;
                }
                let config = if legacy { InterpreterConfig::legacy() } else { InterpreterConfig::isolated() };
                self.log.push(format!("t{t}: create {}", if legacy { "legacy" } else { "isolated" }));
                let out = self.run(t, Action::Create(config));
                let Outcome::Created(r) = out else { self.fail(format!("create: {out:?}")) };
                if self.main_closed {
                    self.see("create after main closed");
                    self.expect("create", brief(&r), &Err(closed_err(0)));
                    return;
                }
                self.expect("create", brief(&r), &Ok(()));
                let interp = r.unwrap();
                if interp.id() != n as u64 {
                    self.fail(format!("create: id {}, expected {n}", interp.id()));
                }
                let gil = if legacy { GilMode::Shared } else { GilMode::Own };
                if interp.config().gil != gil {
                    self.fail(format!("create: gil {:?}, expected {gil:?}", interp.config().gil));
                }
                self.slots.push(SlotM {
                    interp,
                    legacy,
                    closed: false,
                    deferred: false,
                    queue: VecDeque::new(),
                    interrupted: false,
                });
            }
            Op::Work { t, slot, ref steps } => self.work(t as usize, slot as usize % n, steps),
            Op::Pending { t, slot, panics } => {
                let (t, s) = (t as usize, slot as usize % n);
                if self.calls.len() >= MAX_CALLS {
                    return;
                }
                let call = self.calls.len();
                self.log.push(format!("t{t}: pending call {call} on slot {s} (panics: {panics})"));
                let interp = self.slots[s].interp.clone();
                let out = self.run(t, Action::Pending { interp, call, panics });
                let Outcome::Unit(r) = out else { self.fail(format!("pending: {out:?}")) };
                let want = if self.slots[s].closed { Err(closed_err(self.id(s))) } else { Ok(()) };
                self.expect("add_pending_call", brief(&r), &want);
                let life = if want.is_ok() { CallLife::Queued } else { CallLife::Refused };
                if want.is_ok() {
                    self.slots[s].queue.push_back(Entry::Call(call));
                } else {
                    self.see("pending call refused (closed)");
                }
                self.calls.push(CallM { slot: s, panics, life });
            }
            Op::Interrupt { t, slot, cancel: true } => {
                let (t, s) = (t as usize, slot as usize % n);
                self.log.push(format!("t{t}: cancel an interrupt of slot {s}"));
                let out = self.run(t, Action::Cancel(self.slots[s].interp.clone()));
                let want = std::mem::take(&mut self.slots[s].interrupted);
                if want {
                    self.see("interrupt withdrawn");
                }
                if !matches!(out, Outcome::Cancelled(c) if c == want) {
                    self.fail(format!("cancel: expected {want}, got {out:?}"));
                }
            }
            Op::Interrupt { t, slot, cancel: false } => {
                let (t, s) = (t as usize, slot as usize % n);
                self.log.push(format!("t{t}: interrupt slot {s}"));
                let out = self.run(t, Action::Interrupt(self.slots[s].interp.clone()));
                let Outcome::Unit(r) = out else { self.fail(format!("interrupt: {out:?}")) };
                let want = if self.slots[s].closed { Err(closed_err(self.id(s))) } else { Ok(()) };
                self.expect("interrupt", brief(&r), &want);
                if want.is_ok() {
                    self.slots[s].interrupted = true;
                }
            }
            Op::DropOwned { t, which } => {
                let t = t as usize;
                if self.kept.is_empty() {
                    return;
                }
                let (o, owned) = self.kept.remove(which as usize % self.kept.len());
                self.log.push(format!("t{t} ({:?}): drop the handle of object {o}", self.at[t]));
                let holding = match self.at[t] {
                    Where::Holding(a) => Some(a),
                    _ => None,
                };
                let out = self.run(t, Action::Drop(owned));
                let Outcome::Unit(r) = out else { self.fail(format!("drop: {out:?}")) };
                self.expect("drop", brief(&r), &Ok(()));
                self.release(o, holding);
            }
            Op::Close { t, main: true, by_id, .. } => self.close(t as usize, 0, by_id),
            // Mostly subinterpreters: main closed early leaves a case with
            // little to do.
            Op::Close { t, slot, by_id, .. } => {
                if n > 1 {
                    self.close(t as usize, 1 + slot as usize % (n - 1), by_id)
                }
            }
            Op::Enter { w, slot, detached } => {
                let (w, s) = (w as usize, slot as usize % n);
                if self.at[w] != Where::Outside {
                    return;
                }
                let closed = self.slots[s].closed;
                if !closed && self.blocked(w, s) {
                    return;
                }
                self.log
                    .push(format!("t{w}: enter slot {s} and stay ({})", if detached { "detached" } else { "holding" }));
                self.workers[w - 1]
                    .0
                    .send(Cmd::Enter { interp: self.slots[s].interp.clone(), detached })
                    .expect("worker alive");
                let Reply::Entered(r) = self.recv(w) else { self.fail(format!("worker {w}: unexpected reply")) };
                let want = if closed { Err(closed_err(self.id(s))) } else { Ok(()) };
                self.expect("enter", brief(&r), &want);
                if want.is_ok() {
                    self.at[w] = if detached { Where::Detached(s) } else { Where::Holding(s) };
                    self.see(if detached { "worker detached inside" } else { "worker holding inside" });
                }
            }
            Op::Leave { w } => {
                let w = w as usize;
                self.leave(w);
            }
        }
    }

    /// A worker leaves its interpreter (if it can without waiting).
    fn leave(&mut self, w: usize) -> bool {
        let s = match self.at[w] {
            Where::Outside => return false,
            Where::Holding(s) => s,
            Where::Detached(s) => {
                if self.blocked(w, s) {
                    return false;
                }
                s
            }
        };
        self.log.push(format!("t{w}: leave slot {s}"));
        self.workers[w - 1].0.send(Cmd::Leave).expect("worker alive");
        let Reply::Left = self.recv(w) else { self.fail(format!("worker {w}: unexpected reply to leave")) };
        self.at[w] = Where::Outside;
        // A close the runtime's drop deferred is done by the last thread out.
        if self.slots[s].deferred && self.inside(s, usize::MAX) == 0 && (s != 0 || self.live_subs() == 0) {
            self.see("deferred close done by the last thread out");
            self.closed_now(s);
            if s != 0 && self.slots[0].deferred && self.live_subs() == 0 && self.inside(0, usize::MAX) == 0 {
                self.see("deferred close of main done by the last sub's close");
                self.closed_now(0);
            }
        }
        true
    }

    fn work(&mut self, t: usize, s: usize, steps: &[Step]) {
        let want: Want = match self.at[t] {
            Where::Holding(a) if a == s => Ok(()),
            Where::Holding(a) => Err(Error::GilHeldByOtherInterpreter { held: self.id(a), requested: self.id(s) }),
            _ if self.slots[s].closed => Err(closed_err(self.id(s))),
            _ if self.blocked(t, s) => return,
            _ => Ok(()),
        };
        // Plan the steps: object ids for keeps, handles for releases (only
        // when the work is expected to run: a refused entry keeps them).
        let mut plan = Vec::new();
        let mut rt_steps = Vec::new();
        let mut next_obj = self.objs.len();
        for st in steps {
            let rs = match *st {
                Step::Alloc { n, large } => RtStep::Alloc { n, large },
                Step::Garbage { n } => RtStep::Garbage { n },
                Step::Graph { nodes, ref edges } => RtStep::Graph { nodes, edges: edges.clone() },
                Step::Keep { cyclic, in_list } => {
                    if next_obj >= MAX_OBJECTS {
                        continue;
                    }
                    next_obj += 1;
                    RtStep::Keep { obj: next_obj - 1, cyclic, in_list }
                }
                Step::Release { which } => {
                    if want.is_err() || self.kept.is_empty() {
                        continue;
                    }
                    let (o, owned) = self.kept.remove(which as usize % self.kept.len());
                    plan.push((st.clone(), Some(o)));
                    rt_steps.push(RtStep::Release(owned));
                    continue;
                }
                Step::Collect { generation } => RtStep::Collect(generation as usize),
                Step::Checkpoint => RtStep::Checkpoint,
            };
            let o = if let RtStep::Keep { obj, .. } = rs { Some(obj) } else { None };
            plan.push((st.clone(), o));
            rt_steps.push(rs);
        }
        self.log.push(format!("t{t} ({:?}): work in slot {s}: {:?}", self.at[t], plan));
        let interp = self.slots[s].interp.clone();
        let out = self.run(t, Action::Work { interp, steps: rt_steps });
        let Outcome::Worked(r) = out else { self.fail(format!("work: {out:?}")) };
        self.expect("with_gil", brief(&r), &want);
        match &want {
            Err(Error::GilHeldByOtherInterpreter { .. }) => self.see("with_gil: GIL held by another interpreter"),
            Err(_) => self.see("with_gil: closed"),
            Ok(()) if matches!(self.at[t], Where::Holding(_)) => self.see("work re-entering the held interpreter"),
            Ok(()) if matches!(self.at[t], Where::Detached(a) if a == s) => {
                self.see("work entering from allow_threads of the same interpreter")
            }
            Ok(()) => {}
        }
        let Ok(results) = r else { return };
        if results.len() != plan.len() {
            self.fail(format!("work: {} results for {} steps", results.len(), plan.len()));
        }
        // Two-list cycles made since the last collection or checkpoint of this work.
        let mut fresh = 0usize;
        let id = self.id(s);
        for ((st, o), res) in plan.into_iter().zip(results) {
            let what = format!("step {st:?}");
            match st {
                Step::Alloc { .. } => match res {
                    Ok(StepOut::Alloc(true)) => {}
                    other => self.fail(format!("{what}: {other:?}")),
                },
                Step::Garbage { n } => {
                    self.expect(&what, brief(&res), &Ok(()));
                    fresh += 2 * n as usize;
                }
                Step::Graph { .. } => self.expect(&what, brief(&res), &Ok(())),
                Step::Keep { cyclic, in_list } => match res {
                    Ok(StepOut::Kept(owned)) => {
                        let o = o.expect("planned");
                        debug_assert_eq!(o, self.objs.len());
                        if owned.interpreter_id() != id {
                            self.fail(format!("{what}: handle of interpreter {}", owned.interpreter_id()));
                        }
                        self.objs.push(ObjM { slot: s, cyclic, in_list, life: Life::Held });
                        self.kept.push((o, owned));
                    }
                    other => self.fail(format!("{what}: {other:?}")),
                },
                Step::Release { .. } => {
                    self.expect(&what, brief(&res), &Ok(()));
                    self.release(o.expect("planned"), Some(s));
                }
                Step::Collect { generation } => match res {
                    Ok(StepOut::Collected(c)) => {
                        if c < fresh {
                            self.fail(format!("{what}: collected {c}, but {fresh} fresh garbage objects were made"));
                        }
                        fresh = 0;
                        if generation == 2 {
                            for ob in self.objs.iter_mut().filter(|ob| ob.slot == s && ob.life == Life::Garbage) {
                                ob.life = Life::Dead;
                            }
                        }
                    }
                    other => self.fail(format!("{what}: {other:?}")),
                },
                Step::Checkpoint => {
                    fresh = 0;
                    let want = if std::mem::take(&mut self.slots[s].interrupted) {
                        self.see("checkpoint: interrupted");
                        Err(Error::Interrupted { id })
                    } else {
                        let (ran, panics) = self.run_queue(s, true);
                        if ran > 0 {
                            self.see("checkpoint ran pending calls");
                        }
                        if panics > 0 {
                            self.see("checkpoint: pending call panicked");
                            Err(Error::CallbackPanicked { context: "pending call", message: PANIC_TAG.into() })
                        } else {
                            Ok(())
                        }
                    };
                    self.expect(&what, brief(&res), &want);
                }
            }
        }
    }

    fn close(&mut self, t: usize, s: usize, by_id: bool) {
        let id = self.id(s);
        let want: Want = if self.slots[s].closed && by_id {
            // Closed interpreters leave the registry: the id is unknown.
            Err(Error::InterpreterNotFound { id })
        } else if self.slots[s].closed {
            Err(closed_err(id))
        } else if s == 0 && self.live_subs() > 0 {
            Err(Error::MainHasSubinterpreters { remaining: self.live_subs() })
        } else if matches!(self.at[t], Where::Holding(a) | Where::Detached(a) if a == s) {
            Err(Error::CannotCloseCurrent { id })
        } else if s != 0 && self.slots[s].legacy && self.blocked(t, s) {
            return; // a legacy close waits for the shared GIL: not issued
        } else if self.inside(s, t) > 0 {
            Err(Error::InterpreterRunning { id, threads: self.inside(s, t) })
        } else {
            Ok(())
        };
        self.log.push(format!("t{t} ({:?}): close slot {s}{}", self.at[t], if by_id { " by id" } else { "" }));
        let action = if by_id { Action::CloseById(id) } else { Action::Close(self.slots[s].interp.clone()) };
        let out = self.run(t, action);
        let Outcome::Closed(r) = out else { self.fail(format!("close: {out:?}")) };
        self.expect("close", brief(&r), &want);
        self.see(match &want {
            Ok(()) if s == 0 => "close of main",
            Ok(()) if matches!(self.at[t], Where::Holding(_)) => "close from inside another interpreter",
            Ok(()) => "close",
            Err(Error::InterpreterClosed { .. }) => "close: already closed",
            Err(Error::InterpreterNotFound { .. }) => "close by id: not found",
            Err(Error::MainHasSubinterpreters { .. }) => "close: main has subinterpreters",
            Err(Error::CannotCloseCurrent { .. }) if matches!(self.at[t], Where::Detached(_)) => {
                "close: current (from allow_threads)"
            }
            Err(Error::CannotCloseCurrent { .. }) => "close: current",
            Err(Error::InterpreterRunning { .. }) => "close: running",
            Err(_) => "close: other",
        });
        let Ok(report) = r else { return };
        let (ran, panics, held) = self.closed_now(s);
        if report.objects_freed != held {
            self.fail(format!("close: the teardown freed {} objects, expected {held} (held)", report.objects_freed));
        }
        if report.pending_calls_run != ran {
            self.fail(format!("close: ran {} pending calls, expected {ran}", report.pending_calls_run));
        }
        let panicked = report
            .pending_call_errors
            .iter()
            .filter(|e| matches!(e, Error::CallbackPanicked { message, .. } if message == PANIC_TAG))
            .count();
        if report.pending_call_errors.len() != panics || panicked != panics {
            self.fail(format!(
                "close: pending-call errors {:?}, expected {panics} planned panics",
                report.pending_call_errors
            ));
        }
        if report.leaked.live_blocks != 0 || !report.gc_errors.is_empty() || !report.teardown_errors.is_empty() {
            self.fail(format!("close: leaks or errors in {report:?}"));
        }
    }

    /// Drops the runtime (workers may be inside), then lets the workers out
    /// one by one; at the end every handle is closed and every accepted
    /// pending call ran once.
    fn finish(&mut self) {
        // A legacy close in the runtime's drop waits for the shared GIL: let
        // its holders out first.
        if self.slots.iter().any(|s| s.legacy && !s.closed) {
            for w in 1..THREADS {
                if matches!(self.at[w], Where::Holding(a) if self.shared(a)) {
                    self.leave(w);
                }
            }
        }
        self.log.push(format!("t0: drop the runtime (workers at {:?})", &self.at[1..]));
        let rt = self.rt.lock().unwrap().take().expect("runtime alive");
        drop(rt);
        for s in 1..self.slots.len() {
            if !self.slots[s].closed {
                if self.inside(s, usize::MAX) == 0 {
                    self.closed_now(s);
                } else {
                    self.see("runtime drop deferred a close");
                    self.slots[s].deferred = true;
                }
            }
        }
        if !self.slots[0].closed {
            if self.live_subs() == 0 && self.inside(0, usize::MAX) == 0 {
                self.closed_now(0);
            } else {
                self.slots[0].deferred = true;
            }
        }
        self.check(false);
        // Holders first (a detached worker coming back waits for its GIL).
        for detached in [false, true] {
            for w in 1..THREADS {
                if matches!(self.at[w], Where::Detached(_)) == detached && self.leave(w) {
                    self.check(false);
                }
            }
        }
        if self.at.iter().any(|&a| a != Where::Outside) {
            self.fail(format!("workers could not leave: {:?}", self.at));
        }
        for (s, slot) in self.slots.iter().enumerate() {
            if !slot.closed {
                self.fail(format!("slot {s} is not closed in the model after the runtime's drop"));
            }
            let id = slot.interp.id();
            self.expect(
                "with_gil after the runtime's drop",
                brief(&slot.interp.with_gil(|_| ())),
                &Err(closed_err(id)),
            );
            self.expect("close after the runtime's drop", brief(&slot.interp.close()), &Err(closed_err(id)));
            self.expect(
                "interrupt after the runtime's drop",
                brief(&slot.interp.interrupt_handle().interrupt()),
                &Err(closed_err(id)),
            );
            let c = self.counters.clone();
            let late = slot.interp.add_pending_call(move |_| {
                c.runs[MAX_CALLS].fetch_add(1, Ordering::SeqCst);
            });
            self.expect("add_pending_call after the runtime's drop", brief(&late), &Err(closed_err(id)));
        }
        if self.counters.runs[MAX_CALLS].load(Ordering::SeqCst) != 0 {
            self.fail("a refused pending call ran".into());
        }
        if self.calls.iter().any(|c| c.life == CallLife::Queued) {
            self.fail("the model left accepted pending calls queued".into());
        }
        if self.objs.iter().any(|o| o.life != Life::Dead) {
            self.fail("the model left objects alive".into());
        }
        self.check(false);
        for (o, owned) in std::mem::take(&mut self.kept) {
            let id = self.slots[self.objs[o].slot].interp.id();
            self.expect("Owned::with after the runtime's drop", brief(&owned.with(|_| ())), &Err(closed_err(id)));
        }
        self.check(false);
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Workers leave whatever they are in when their channel closes.
        self.workers.clear();
        if std::thread::panicking() {
            // Do not wait for threads a failed case may have left stuck;
            // nor drop a runtime they may keep busy.
            if let Some(rt) = self.rt.lock().ok().and_then(|mut g| g.take()) {
                std::mem::forget(rt);
            }
            return;
        }
        for j in self.joins.drain(..) {
            j.join().expect("worker thread panicked");
        }
    }
}

fn run_case(ops: &[Op]) -> BTreeMap<&'static str, usize> {
    let mut h = Harness::new();
    for op in ops {
        h.apply(op);
        h.check(true);
    }
    h.finish();
    std::mem::take(&mut h.seen)
}

fn silence_planned_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&PANIC_TAG) {
                default(info);
            }
        }));
    });
}

#[test]
fn api_state_machine() {
    silence_planned_panics();
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(500);
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&proptest::collection::vec(op(), 1..64), |ops| {
        let seen = run_case(&ops);
        let mut cov = COVERAGE.lock().unwrap();
        for (k, v) in seen {
            *cov.entry(k).or_default() += v;
        }
        Ok(())
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, ops)) => panic!("minimal failing sequence:\n{ops:#?}\n{reason}"),
        Err(e) => panic!("{e}"),
    }
    let cov = COVERAGE.lock().unwrap();
    eprintln!("api_state_machine: {cases} cases; outcomes reached: {cov:#?}");
    if cases >= 200 {
        for what in [
            "close",
            "close of main",
            "close from inside another interpreter",
            "close: already closed",
            "close by id: not found",
            "interrupt withdrawn",
            "close: main has subinterpreters",
            "close: current",
            "close: current (from allow_threads)",
            "close: running",
            "create after main closed",
            "with_gil: GIL held by another interpreter",
            "with_gil: closed",
            "work re-entering the held interpreter",
            "checkpoint: interrupted",
            "checkpoint ran pending calls",
            "checkpoint: pending call panicked",
            "pending call refused (closed)",
            "release under the owner's GIL",
            "release queued as a pending call",
            "worker detached inside",
            "worker holding inside",
            "runtime drop deferred a close",
            "deferred close done by the last thread out",
        ] {
            assert!(cov.get(what).copied().unwrap_or(0) > 0, "outcome never reached in {cases} cases: {what}");
        }
    }
}
