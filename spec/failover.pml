/*
 * failover.pml -- master (heartbeatd with managed failback), backup (failoverd's
 * detector), the two networks between them and an attacker on the path who
 * replays recorded frames, in discrete time.
 *
 * How to run it, what is modelled and what is abstracted: spec/README.md.
 * Every property, its bound and the test that checks it: spec/properties.md.
 *
 * One process drives the whole world. Each loop iteration takes one event
 * (a host acts, the network delivers or loses a datagram, the attacker
 * replays one, a host crashes or restarts, a host's health verdict changes)
 * or lets one tick of time pass. Time only passes when nothing is
 * due ("maximal progress"): a deadline that has been reached fires before the
 * clock moves on, exactly as the shell wakes the core at the deadline the core
 * asked for. Events at the same instant interleave in every order.
 *
 * Machine-readable annotations, checked against failoverd/core/detector.py
 * and failoverd/core/master.py by tests/test_spec_model.py:
 *   @states <machine>: <name> ...
 *   @transition <machine> <trigger>: <source> -> <dest>
 *   @declared <machine> <trigger>: <source> -> <dest> (why it is not modelled)
 * The health-check transitions (unfit, standing_down, checks_fail, checks_pass
 * and the step-down's released and stop) happen only in the HEALTH=1 build,
 * the link transitions (link_down, link_up, link_lost) only in the LINKCUT=1 build.
 * The state constants are D_<name> (detector) and M_<name> (master): Promela
 * has one namespace for mtype names, and both machines have an `acquiring`.
 */

/* ---- configuration (override with spin -D...) ---------------------------- */

#ifndef INTERVAL
#define INTERVAL 2          /* ticks between heartbeats (1 s = 2 ticks)            */
#endif
#define SLACK    1          /* scheduling allowance (0.2 s rounded up to a tick)    */
#define SUSPECT  (INTERVAL + SLACK)   /* suspect_misses = 1                        */
#define FAIL     (3 * INTERVAL)       /* fail_misses = 3                           */
#define PROBE_T  1          /* an ARP probe round (3 x 0.1 s) ends 1 tick after it starts */
#define PROBE_AT (FAIL - PROBE_T)     /* suspect: the probe starts here so that it ends at the deadline */
#define RETRY    INTERVAL   /* contested: re-probe every retry interval             */
#define OP_MIN   1          /* an acquire or release completes 1..OP_MAX ticks     */
#define OP_MAX   2          /*   after it starts (hooks, netlink, gratuitous ARP)  */
#define DELAY    1          /* a datagram arrives 0..DELAY ticks after it is sent  */

/* Narrowings for the private-link-cut analysis (spec/README.md, "Without links
 * up"); the defaults are the full model. */
#ifndef M_ACQ_MAX
#define M_ACQ_MAX OP_MAX    /* the master's acquire completes OP_MIN..M_ACQ_MAX ticks after it starts */
#endif
#ifndef B_OP_MAX
#define B_OP_MAX OP_MAX     /* the backup's acquire and release: OP_MIN..B_OP_MAX ticks */
#endif
#ifndef PRESUME
#define PRESUME 1           /* 0: leave out the master's presume (it acquires only on the handshake) */
#endif
#ifndef HANDSHAKE
#define HANDSHAKE 1         /* 0: leave out the master's handshake (it acquires only on presume) */
#endif
#ifndef ARP_DELAY
#define ARP_DELAY 1         /* another host's ARP for the address is seen 0..ARP_DELAY ticks after it is sent */
#endif
#define SLOTS    2          /* datagrams in flight per direction                   */

/* Freshness (spec/README.md, "Freshness and the replaying attacker"); each
 * rule includes the one before:
 * ACK_RULE 0: the rule before issue 9: every authenticated frame that is not
 *   a replay counts (resets the receiver's silence; its flags and the
 *   transition it triggers take effect), and the master answers nothing.
 * ACK_RULE 1: a frame counts only if it acknowledges the receiver's current
 *   epoch; one that does not is recorded and answered, nothing else; the
 *   master answers a new backup epoch at once with a heartbeat.
 * ACK_RULE 2: and the master takes "backup released" only from a status that
 *   acknowledges a heartbeat the backup counted: under 1 the backup's answer
 *   to a heartbeat it did not count releases the master while the backup's
 *   silence still runs, and both hold under links up.
 * ACK_RULE 3: and the backup does not answer a heartbeat it does not count
 *   that one it counted overtook: under 2 a replay makes it send a
 *   "released" status at any time, long after the heartbeat it
 *   acknowledges, which reopens the private-link-cut handshake race.
 * ATTACK 1: an attacker on the path replays recorded frames (0: none). */
#ifndef ACK_RULE
#define ACK_RULE 3
#endif
#ifndef ATTACK
#define ATTACK 1
#endif

/* Health checks (spec/README.md, "Health checks"). HEALTH 1: each host's
 * checks' combined verdict (after their rise/fall hysteresis, which is not
 * modelled: the verdict is what the cores are told) may fall or rise at any
 * instant while the host is up, FLIPS times in a run in all (both hosts). HEALTH 0 (the default): both always pass, and every state
 * and counterexample of the model without health checks is unchanged.
 * RELEASE_FLOOR 0: leave out the master's release floor (a status counts as
 * "backup released" only if it answers a heartbeat sent since the master's
 * last rejoin), to show what it prevents.
 * REJOIN_PRESUME 1 (the cores, since spin found the race, spec/README.md
 * "Health checks"): a master that rejoins after standing down presumes the
 * backup dead no earlier than a failure timeout after the rejoin, as a backup
 * may be taking over on the `leaving` heartbeats it sent until then. 0 (the
 * cores before): a failure timeout after it last heard the backup, however
 * long ago (Master._presume_from ran on through the step-down). */
#ifndef HEALTH
#define HEALTH 0
#endif
#ifndef FLIPS
#define FLIPS 2             /* verdict changes in a run, both hosts together       */
#endif
#ifndef RELEASE_FLOOR
#define RELEASE_FLOOR 1
#endif
#ifndef REJOIN_PRESUME
#define REJOIN_PRESUME 1
#endif

/* Link cuts (spec/README.md, "Link cuts"). LINKCUT 1: either host's links
 * (public and private) may be cut at any instant while it is up, and come back,
 * LINK_FLIPS times in a run in all (both hosts): while a host is cut every
 * frame to or from it is lost, no ARP reaches or leaves it, and an address it
 * holds answers nobody (a probe does not see it); nothing else is lost (the
 * races of a lossy network are the other builds' subject). LINKWATCH 1 (the cores):
 * the core is told, and a cut host is unfit (one verdict with its checks:
 * M_FIT, B_FIT); 0 (the cores before): the core is not told. LINKCUT 0 (the
 * default): no link is ever cut, and every other build is unchanged. */
#ifndef LINKCUT
#define LINKCUT 0
#endif
#ifndef LINKWATCH
#define LINKWATCH 1
#endif
#ifndef LINK_FLIPS
#define LINK_FLIPS 2        /* link changes in a run, both hosts together          */
#endif
/* Links up across a cut: a flap (a cut shorter than FAIL) is loss, and links
 * up must hold across it (its ticks count in the gaps); a cut of FAIL or more
 * may end in a takeover, and links up starts afresh when it ends: the network
 * then delivers promptly, a host counting a frame within FAIL - RESTORED_GAP
 * ticks of the return (a heartbeat due within INTERVAL, and the handshake of
 * a restarted host: three deliveries). A flap that, with the silence before
 * it, outlasts FAIL is a lossy network, the other builds' subject
 * (spec/README.md, "Link cuts"). */
#define RESTORED_GAP (FAIL - INTERVAL - 3 * DELAY)

#ifndef M_CRASHES
#define M_CRASHES 2         /* master crashes or shutdowns in one run              */
#endif
#ifndef B_CRASHES
#define B_CRASHES 1         /* backup crashes in one run                           */
#endif

/* Network assumption. NET_UP: "links up" (spec/README.md): a host that is up
 * counts a datagram from its peer (not a replay), while the peer is up, at
 * least once in every FAIL ticks; runs that break this are cut off
 * (end_links_broken).
 * NET_PRIVATE_CUT: datagrams may be lost without limit (the private link and
 * heartbeat paths are cut) but the public network is joined: the ARP probe
 * sees the holder and ARP conflicts are seen. NET_PARTITION: both networks
 * cut: datagrams lost without limit, every ARP probe is silent and no ARP
 * conflict is seen. */
#define NET_UP          0
#define NET_PRIVATE_CUT 1
#define NET_PARTITION   2
#ifndef NET
#define NET NET_UP
#endif

/* Bounds (ticks) checked by the monitors; spec/properties.md derives them. */
#ifndef TAKEOVER_BOUND
#define TAKEOVER_BOUND (DELAY + FAIL + OP_MAX)
#endif
#ifndef FAILBACK_BOUND
#define FAILBACK_BOUND (FAIL + OP_MAX + OP_MAX + (FAIL - 1) + OP_MAX)
#endif
#ifndef PRESUME_BOUND
#define PRESUME_BOUND (DELAY + FAIL + PROBE_T + M_ACQ_MAX)
#endif
#ifndef STEPDOWN_BOUND
#define STEPDOWN_BOUND (M_ACQ_MAX + OP_MAX + DELAY + FAIL + B_OP_MAX)   /* spec/properties.md, 10 */
#endif
#ifndef OVERLAP_BOUND
#define OVERLAP_BOUND (ARP_DELAY + ARP_DELAY + B_OP_MAX)   /* backup's ARP out, master's defence back, release */
#endif

/* ---- states --------------------------------------------------------------- */

/* @states detector: monitoring suspect contested acquiring failed_over recovering unfit claiming granted */
#define D_monitoring  0
#define D_suspect     1
#define D_contested   2
#define D_acquiring   3
#define D_failed_over 4
#define D_recovering  5
#define D_unfit       6   /* health checks (HEALTH 1): the deadline came while this backup's checks fail */
#define D_claiming    7   /* etcd witness: never entered here (spec/witness.pml models the claim) */
#define D_granted     8   /* etcd witness: never entered here (spec/witness.pml models the wait) */

/* @states master: waiting probing acquiring holding releasing stopped standing_down claiming granted */
#define M_waiting   0
#define M_probing   1
#define M_acquiring 2
#define M_holding   3
#define M_releasing 4
#define M_stopped   5
#define M_standing_down 6   /* health checks (HEALTH 1): released, saying `leaving` while its checks fail */
#define M_claiming  7   /* etcd witness: never entered here (spec/witness.pml models the claim) */
#define M_granted   8   /* etcd witness: never entered here (spec/witness.pml models the wait) */

/* Transitions of the code that the model leaves out, and why:
 * @declared detector checks_pass: claiming -> claiming (etcd witness: checks_pass in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector checks_pass: granted -> granted (etcd witness: checks_pass in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector link_up: claiming -> claiming (etcd witness: a link back in a witness state changes nothing; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector link_up: granted -> granted (etcd witness: a link back in a witness state changes nothing; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector claimed: acquiring -> acquiring (etcd witness: the witness's answer to a claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector claimed: claiming -> claiming (etcd witness: the witness's answer to a claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector claimed: claiming -> contested (etcd witness: the witness's answer to a claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector claimed: claiming -> granted (etcd witness: the witness's answer to a claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector claimed: claiming -> monitoring (etcd witness: the witness's answer to a claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector claimed: contested -> contested (etcd witness: the witness's answer to a claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector claimed: failed_over -> failed_over (etcd witness: the witness's answer to a claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector claimed: granted -> granted (etcd witness: the witness's answer to a claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector claimed: monitoring -> monitoring (etcd witness: the witness's answer to a claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector claimed: recovering -> recovering (etcd witness: the witness's answer to a claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector claimed: suspect -> suspect (etcd witness: the witness's answer to a claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector claimed: unfit -> unfit (etcd witness: the witness's answer to a claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector conflict: claiming -> claiming (etcd witness: conflict in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector conflict: granted -> granted (etcd witness: conflict in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector deadline: suspect -> claiming (etcd witness: deadline in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector heartbeat: claiming -> claiming (etcd witness: heartbeat in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector heartbeat: granted -> monitoring (etcd witness: heartbeat in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector heartbeat: failed_over -> failed_over (etcd witness, keep: held on confirmations alone, the failback waits for a proof, as the master could not claim; keeping while kept is proved in spec/witness.pml, which this model leaves it to)
 * @declared detector probed: claiming -> claiming (etcd witness: probed in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector probed: contested -> claiming (etcd witness: probed in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector probed: granted -> granted (etcd witness: probed in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector probed: suspect -> claiming (etcd witness: probed in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector proof_expiring: failed_over -> recovering (etcd witness: the holder's last proof of its claim runs out; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector proof_expiring: granted -> contested (etcd witness: the holder's last proof of its claim runs out; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector released: claiming -> claiming (etcd witness: released in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector released: granted -> granted (etcd witness: released in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector renewed: acquiring -> acquiring (etcd witness: a renewal of the witness's claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector renewed: claiming -> claiming (etcd witness: a renewal of the witness's claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector renewed: contested -> contested (etcd witness: a renewal of the witness's claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector renewed: failed_over -> failed_over (etcd witness: a renewal of the witness's claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector renewed: granted -> granted (etcd witness: a renewal of the witness's claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector renewed: monitoring -> monitoring (etcd witness: a renewal of the witness's claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector renewed: recovering -> recovering (etcd witness: a renewal of the witness's claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector renewed: suspect -> suspect (etcd witness: a renewal of the witness's claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector renewed: unfit -> unfit (etcd witness: a renewal of the witness's claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector stop: claiming -> claiming (etcd witness: stop in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector stop: granted -> granted (etcd witness: stop in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector wait_over: granted -> acquiring (etcd witness: the wait W after the witness's grant; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector acquired: acquiring -> recovering (etcd witness: an acquire that finished after the proof ran out; proved in spec/witness.pml, which this model leaves it to)
 * @declared master backup_released: claiming -> claiming (etcd witness: backup_released in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared master backup_released: granted -> granted (etcd witness: backup_released in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared master backup_released: probing -> claiming (etcd witness: backup_released in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared master backup_released: waiting -> claiming (etcd witness: backup_released in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared master checks_fail: claiming -> claiming (etcd witness: checks_fail in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared master checks_fail: granted -> standing_down (etcd witness: checks_fail in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared master link_down: claiming -> claiming (etcd witness: a lost link in a witness state; the claimed rows read the verdict; proved in spec/witness.pml, which this model leaves it to)
 * @declared master link_down: granted -> standing_down (etcd witness: a lost link while granted gives the claim back, as a failing check does; proved in spec/witness.pml, which this model leaves it to)
 * @declared master link_up: claiming -> claiming (etcd witness: a link back in a witness state changes nothing; proved in spec/witness.pml, which this model leaves it to)
 * @declared master link_up: granted -> granted (etcd witness: a link back in a witness state changes nothing; proved in spec/witness.pml, which this model leaves it to)
 * @declared master checks_pass: claiming -> claiming (etcd witness: checks_pass in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared master checks_pass: granted -> granted (etcd witness: checks_pass in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared master claimed: claiming -> granted (etcd witness: the witness's answer to a claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared master claimed: claiming -> standing_down (etcd witness: the witness's answer to a claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared master claimed: claiming -> stopped (etcd witness: the witness's answer to a claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared master claimed: claiming -> waiting (etcd witness: the witness's answer to a claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared master presume: waiting -> claiming (etcd witness: presume in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared master probed: claiming -> claiming (etcd witness: probed in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared master probed: granted -> granted (etcd witness: probed in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared master probed: probing -> claiming (etcd witness: probed in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared master proof_expiring: granted -> waiting (etcd witness: the holder's last proof of its claim runs out; proved in spec/witness.pml, which this model leaves it to)
 * @declared master proof_expiring: holding -> releasing (etcd witness: the holder's last proof of its claim runs out; proved in spec/witness.pml, which this model leaves it to)
 * @declared master renewed: acquiring -> acquiring (etcd witness: a renewal of the witness's claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared master renewed: claiming -> claiming (etcd witness: a renewal of the witness's claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared master renewed: granted -> granted (etcd witness: a renewal of the witness's claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared master renewed: holding -> holding (etcd witness: a renewal of the witness's claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared master renewed: probing -> probing (etcd witness: a renewal of the witness's claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared master renewed: releasing -> releasing (etcd witness: a renewal of the witness's claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared master renewed: standing_down -> standing_down (etcd witness: a renewal of the witness's claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared master renewed: stopped -> stopped (etcd witness: a renewal of the witness's claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared master renewed: waiting -> waiting (etcd witness: a renewal of the witness's claim; proved in spec/witness.pml, which this model leaves it to)
 * @declared master retry: waiting -> claiming (etcd witness: retry in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared master stop: claiming -> claiming (etcd witness: stop in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared master stop: granted -> stopped (etcd witness: stop in a witness state; proved in spec/witness.pml, which this model leaves it to)
 * @declared master wait_over: granted -> acquiring (etcd witness: the wait W after the witness's grant; proved in spec/witness.pml, which this model leaves it to)
 * @declared detector checks_pass: monitoring -> monitoring (health checks: the model's hosts always pass theirs; tests/test_core_health.py couples both cores under flapping health)
 * @declared detector checks_pass: suspect -> suspect (health checks: the model's hosts always pass theirs; tests/test_core_health.py couples both cores under flapping health)
 * @declared detector checks_pass: contested -> contested (health checks: the model's hosts always pass theirs; tests/test_core_health.py couples both cores under flapping health)
 * @declared detector checks_pass: acquiring -> acquiring (health checks: the model's hosts always pass theirs; tests/test_core_health.py couples both cores under flapping health)
 * @declared detector checks_pass: failed_over -> failed_over (health checks: the model's hosts always pass theirs; tests/test_core_health.py couples both cores under flapping health)
 * @declared detector checks_pass: recovering -> recovering (health checks: the model's hosts always pass theirs; tests/test_core_health.py couples both cores under flapping health)
 * @declared detector conflict: monitoring -> monitoring (ignored: no address of ours to yield, or already yielding; the model's conflict step skips it)
 * @declared detector conflict: suspect -> suspect (ignored: no address of ours to yield, or already yielding; the model's conflict step skips it)
 * @declared detector conflict: contested -> contested (ignored: no address of ours to yield, or already yielding; the model's conflict step skips it)
 * @declared detector conflict: unfit -> unfit (ignored: no address of ours to yield, or already yielding; the model's conflict step skips it)
 * @declared detector conflict: recovering -> recovering (ignored: no address of ours to yield, or already yielding; the model's conflict step skips it)
 * @declared detector heartbeat: monitoring -> monitoring (ignored: all is well; the model only restarts the silence)
 * @declared detector probed: monitoring -> monitoring (a stale probe answer is dropped; the model's probe ends with its suspicion)
 * @declared detector probed: suspect -> suspect (a probe answer before the deadline waits for it, and a stale one is dropped; the model's probe ends at the deadline)
 * @declared detector probed: unfit -> unfit (a stale probe answer is dropped; the model's probe ends with its suspicion)
 * @declared detector probed: acquiring -> acquiring (a stale probe answer is dropped; the model's probe ends with its suspicion)
 * @declared detector probed: failed_over -> failed_over (a stale probe answer is dropped; the model's probe ends with its suspicion)
 * @declared detector probed: recovering -> recovering (a stale probe answer is dropped; the model's probe ends with its suspicion)
 * @declared detector stop: monitoring -> monitoring (the backup's stop: the model's backup stops by crashing)
 * @declared detector stop: suspect -> suspect (the backup's stop: the model's backup stops by crashing)
 * @declared detector stop: contested -> contested (the backup's stop: the model's backup stops by crashing)
 * @declared detector stop: unfit -> unfit (the backup's stop: the model's backup stops by crashing)
 * @declared detector stop: acquiring -> acquiring (the backup's stop: the model's backup stops by crashing)
 * @declared detector stop: failed_over -> failed_over (the backup's stop: the model's backup stops by crashing)
 * @declared detector stop: recovering -> recovering (the backup's stop: the model's backup stops by crashing)
 * @declared detector released: monitoring -> monitoring (the backup's stop: the model's backup stops by crashing)
 * @declared detector released: suspect -> suspect (the backup's stop: the model's backup stops by crashing)
 * @declared detector released: contested -> contested (the backup's stop: the model's backup stops by crashing)
 * @declared detector released: unfit -> unfit (the backup's stop: the model's backup stops by crashing)
 * @declared detector released: acquiring -> acquiring (the backup's stop: the model's backup stops by crashing)
 * @declared detector released: failed_over -> failed_over (the backup's stop: the model's backup stops by crashing)
 * @declared master backup_released: acquiring -> acquiring (ignored: nothing to take back, or already taking it)
 * @declared master backup_released: holding -> holding (ignored: nothing to take back, or already taking it)
 * @declared master backup_released: releasing -> releasing (ignored: nothing to take back, or already taking it)
 * @declared master backup_released: standing_down -> standing_down (ignored: nothing to take back, or already taking it)
 * @declared master backup_released: stopped -> stopped (ignored: nothing to take back, or already taking it)
 * @declared master presume: waiting -> acquiring (a master without an ARP probe: the model's master always probes)
 * @declared master probed: waiting -> waiting (a probe that outlived its probing is dropped)
 * @declared master probed: acquiring -> acquiring (a probe that outlived its probing is dropped)
 * @declared master probed: holding -> holding (a probe that outlived its probing is dropped)
 * @declared master probed: releasing -> releasing (a probe that outlived its probing is dropped)
 * @declared master probed: standing_down -> standing_down (a probe that outlived its probing is dropped)
 * @declared master probed: stopped -> stopped (a probe that outlived its probing is dropped)
 * @declared master checks_fail: acquiring -> acquiring (health checks: the model's hosts always pass theirs; tests/test_core_health.py couples both cores under flapping health)
 * @declared master checks_fail: releasing -> releasing (health checks: the model's hosts always pass theirs; tests/test_core_health.py couples both cores under flapping health)
 * @declared master checks_fail: standing_down -> standing_down (health checks: the model's hosts always pass theirs; tests/test_core_health.py couples both cores under flapping health)
 * @declared master checks_fail: stopped -> stopped (health checks: the model's hosts always pass theirs; tests/test_core_health.py couples both cores under flapping health)
 * @declared master checks_pass: waiting -> waiting (health checks: the model's hosts always pass theirs; tests/test_core_health.py couples both cores under flapping health)
 * @declared master checks_pass: probing -> probing (health checks: the model's hosts always pass theirs; tests/test_core_health.py couples both cores under flapping health)
 * @declared master checks_pass: acquiring -> acquiring (health checks: the model's hosts always pass theirs; tests/test_core_health.py couples both cores under flapping health)
 * @declared master checks_pass: holding -> holding (health checks: the model's hosts always pass theirs; tests/test_core_health.py couples both cores under flapping health)
 * @declared master checks_pass: releasing -> releasing (health checks: the model's hosts always pass theirs; tests/test_core_health.py couples both cores under flapping health)
 * @declared master checks_pass: stopped -> stopped (health checks: the model's hosts always pass theirs; tests/test_core_health.py couples both cores under flapping health)
 * @declared detector retry: failed_over -> acquiring (one address: an acquire never fails part-way)
 * @declared detector released: recovering -> recovering (one address: a release never fails part-way)
 * @declared detector retry: recovering -> recovering (one address: a release never fails part-way)
 * @declared master retry: holding -> acquiring (one address: an acquire never fails part-way)
 * @declared master stop: acquiring -> acquiring (a stop during an acquire is modelled as a crash)
 * @declared master stop: holding -> stopped (unmanaged master: failback is not managed, out of scope)
 * @declared master checks_fail: waiting -> releasing (one address: a waiting master holds nothing)
 * @declared master checks_fail: probing -> releasing (one address: a probing master holds nothing)
 * @declared master checks_fail: holding -> standing_down (unmanaged master: holding with nothing to release, out of scope)
 * @declared master retry: standing_down -> releasing (one address: a release never fails part-way)
 * @declared master stop: standing_down -> releasing (one address: a stood-down master holds nothing)
 * @declared master checks_pass: standing_down -> holding (unmanaged master: failback is not managed, out of scope)
 * @declared master link_down: acquiring -> acquiring (the acquired row reads the verdict: modelled there)
 * @declared master link_down: releasing -> releasing (already letting go: the released row reads the verdict)
 * @declared master link_down: standing_down -> standing_down (already stood down)
 * @declared master link_down: stopped -> stopped (a stopped master is down in the model)
 * @declared master link_down: holding -> standing_down (unmanaged master: holding with nothing to release, out of scope)
 * @declared master link_down: waiting -> releasing (one address: a waiting master holds nothing)
 * @declared master link_down: probing -> releasing (one address: a probing master holds nothing)
 * @declared master link_up: waiting -> waiting (the verdict was fit already: nothing to rejoin)
 * @declared master link_up: probing -> probing (the verdict was fit already: nothing to rejoin)
 * @declared master link_up: acquiring -> acquiring (the acquired row reads the verdict: modelled there)
 * @declared master link_up: holding -> holding (the verdict was fit already: nothing to rejoin)
 * @declared master link_up: releasing -> releasing (the released row reads the verdict: modelled there)
 * @declared master link_up: stopped -> stopped (a stopped master is down in the model)
 * @declared detector link_up: monitoring -> monitoring (modelled: the silence restarts, no transition)
 * @declared detector link_up: acquiring -> acquiring (modelled: the silence restarts, no transition)
 * @declared detector link_up: failed_over -> failed_over (modelled: the silence restarts, no transition)
 * @declared detector link_up: recovering -> recovering (modelled: the silence restarts, no transition)
 */

/* ---- the world ------------------------------------------------------------ */

/* backup */
bool b_up = 1;
byte d_state = D_monitoring;
bool b_addr;              /* the address is on the backup's interface          */
byte b_silence;           /* ticks since the last counted heartbeat or the start (capped) */
bool b_deadline;          /* the master said `leaving`: fail deadline now       */
bool b_probe_sched;       /* suspect: the probe waits for PROBE_AT              */
bool b_probe;             /* an ARP probe is in flight                          */
byte b_probe_t;           /* ticks until it completes                           */
bool b_probe_snap;        /* what it saw: someone answered for the address     */
bool b_probe_held;        /* (LINKCUT 1) the address was configured but cut off when it started */
bool b_probed;            /* a probe result is known and not yet used           */
bool b_answered;          /* that result                                        */
byte b_retry_t;           /* contested: ticks until the next probe              */
bool b_op;                /* acquire or release in flight (which: d_state)      */
byte b_op_t;              /* ticks since it started                             */
bool b_hb_pending;        /* a heartbeat arrived while acquiring                */
byte b_ack;               /* the newest master epoch recorded (0: none): what statuses acknowledge */
bool b_ack_counted;       /* the newest heartbeat recorded counted (acknowledged this backup epoch) */
bool b_ack_floor;         /* and was sent since the master's last rejoin (its release floor; HEALTH 1) */
byte b_epoch = 1;         /* this backup's epoch: new at every start            */
byte b_crashes;
byte b_down_t;

/* master */
bool m_up = 1;
byte m_state = M_waiting;
bool m_addr;
byte m_epoch = 1;
byte m_back;              /* the newest backup epoch recorded (0: none): what heartbeats acknowledge */
byte m_hb_t;              /* ticks until the next heartbeat (0: due now)        */
byte m_silence;           /* ticks since start or the last counted status      */
bool m_probe;
byte m_probe_t;
bool m_probe_snap;
bool m_probe_held;        /* (LINKCUT 1) as b_probe_held */
bool m_op;
byte m_op_t;
byte m_crashes;
byte m_down_t;
byte m_reclaim_t;         /* holding: ticks until it may announce again (at most once per interval) */
bool m_stopping;          /* releasing for a stop (else, HEALTH 1: stepping down) */

/* health checks (HEALTH 1): each host's combined verdict, as its core is told it */
bool m_fit = 1;           /* the master's checks pass                           */
bool b_fit = 1;           /* the backup's checks pass                           */
byte flips;               /* verdict changes so far in the run, both hosts (at most FLIPS) */

/* link cuts (LINKCUT 1): each host's links cut, as they are, not as its core knows */
bool m_cut;               /* the master's links are down                        */
bool b_cut;               /* the backup's links are down                        */
byte link_flips;          /* link changes so far in the run, both hosts (at most LINK_FLIPS) */
byte cut_t;               /* ticks the current cut has lasted (capped at FAIL)  */

/* ARP conflict detection (RFC 5227) on the public network: another host's
 * gratuitous ARP for the address, on its way to a host that watches (the
 * backup in acquiring/failed_over/recovering, the master in holding) */
bool arp_to_b;
byte arp_to_b_age;
bool arp_to_m;
byte arp_to_m_age;

/* master -> backup heartbeats and backup -> master statuses, in send order.
 * All in flight were sent in the sender's current epoch (m_epoch, b_epoch): a
 * host restarts only once the frames of its previous life have left the
 * network (spec/README.md, "Hosts"). */
byte hb_n;
bool hb_acks[SLOTS];      /* it acknowledges the backup's current epoch         */
bool hb_leaving[SLOTS];
bool hb_floor[SLOTS];     /* sent since the master's last rejoin (HEALTH 1; the release floor) */
byte hb_age[SLOTS];
byte st_n;
bool st_acks[SLOTS];      /* it acknowledges the master's current epoch         */
bool st_counted[SLOTS];   /* the heartbeat it acknowledges counted at the backup (the master knows:
                             it remembers what each of its heartbeats acknowledged) */
bool st_holds[SLOTS];
bool st_floor[SLOTS];     /* the heartbeat it acknowledges was sent since the master's last rejoin */
byte st_age[SLOTS];

/* The replaying attacker (spec/README.md, "The replaying attacker") has
 * recorded every frame sent before its receiver's current life began (while
 * the receiver was up in an earlier life, down, or not yet heard of): frames
 * whose sequence numbers this life never saw, so it records any of them as
 * new as long as its epoch is not older than the newest it has recorded.
 * What it can replay is therefore fixed at the receiver's start: frames of
 * the peer's epochs up to the peer's epoch then. A frame of the receiver's
 * current life it can only delay, which is the network's delay. */
byte rh_upto;             /* the newest master epoch at the backup's start (0: first life, nothing to replay) */
byte rs_upto;             /* the newest backup epoch at the master's start (0: first life) */
bool rh_used;             /* a heartbeat was replayed this tick                 */
bool rs_used;             /* a status was replayed this tick                    */

/* links-up bookkeeping (NET_UP only) */
byte gap_b;               /* ticks the backup has gone without counting a heartbeat while both are up */
byte gap_m;               /* same for the master and statuses                   */
bool links_broken;

/* property monitors */
byte takeover_age;        /* ticks since the master died with the backup up     */
byte failback_age;        /* ticks since the master (re)started with the backup up */
byte overlap_age;         /* ticks both hosts have had the address configured (capped) */
byte alone_age;           /* ticks the master has waited without the address while the backup is dead */
byte stepdown_age;        /* ticks the backup has gone without the address while the master is unfit
                             and the backup fit (both up) */
bool b_acquired_unfit;    /* the backup began an acquire while its checks failed (never, property 11) */
bool b_acquired_cut;      /* the backup began an acquire while its links were cut (never under LINKWATCH, property 14) */
bool fault_armed;         /* both unfit since the master stood down with the backup holding nothing */
bool master_dead_backup_up;   /* liveness antecedent: takeover                  */
bool master_alone;        /* liveness antecedent: failback with the backup dead (presume) */
#if NET == NET_UP
bool master_back_links_up = 1;   /* liveness antecedent: failback (both start now) */
#else
bool master_back_links_up;
#endif

hidden byte j;            /* scratch: the slot being delivered */
hidden byte k;            /* scratch: loop index */
hidden byte x;            /* scratch: the slot being dropped */
hidden int clock;           /* the tick count, for replayed trails only (not part of the state) */

#define BACKUP_HOLDS (d_state == D_acquiring || d_state == D_failed_over || \
                      d_state == D_recovering || b_addr)
#define PUBLIC_JOINED (NET != NET_PARTITION)
/* a cut host sends and hears nothing on the wire (LINKCUT 1) */
#define WIRE_CUT (m_cut || b_cut)
#define PROBE_SEES(holder) (PUBLIC_JOINED && (holder) && !WIRE_CUT)
/* who passes another host's ARP for the address to its core: the backup while
 * it holds or is adding it (the detector's HOLDING_STATES), the master while
 * holding; an ARP that reaches a host no longer watching is dropped */
#define BACKUP_WATCHES (b_up && (d_state == D_acquiring || d_state == D_failed_over || d_state == D_recovering))
#define MASTER_WATCHES (m_up && m_state == M_holding)

/* The one verdict each core acts on: its checks pass and, once the core is
 * told of its links (LINKWATCH 1), its links are up. */
#define M_FIT (m_fit && !(LINKWATCH && m_cut))
#define B_FIT (b_fit && !(LINKWATCH && b_cut))

/* health checks (HEALTH 1; spec/properties.md, 10-12) */
#define BOTH_UNFIT    (m_up && b_up && !m_fit && !b_fit)
#define STEPDOWN_ANTE (m_up && b_up && !m_fit && b_fit)   /* the master stepping down, a fit backup to take over */
/* Can the master get back to waiting without a restart, so that the time
 * since it last heard the backup (m_silence: Master._presume_from) is still
 * to be read? Always in waiting; with health checks after a step-down (a
 * fall, and a rise unless it is unfit already or rises during the release)
 * while verdict changes are left in the run, unless the rejoin restarts it
 * (REJOIN_PRESUME 1). */
#define M_MAY_REJOIN (m_state == M_waiting || (HEALTH && !REJOIN_PRESUME && m_up && \
	(m_state == M_acquiring || m_state == M_holding || m_state == M_standing_down || \
	 (m_state == M_releasing && !m_stopping)) && \
	FLIPS - flips >= (m_fit -> (m_state == M_releasing -> 0 : 2) : 1)))

#define REPLAYED_HEARTBEAT(epoch) \
	printf("REPLAY t=%d heartbeat of master epoch %d to backup epoch %d\n", clock, epoch, b_epoch)
#define REPLAYED_STATUS(epoch) \
	printf("REPLAY t=%d status of backup epoch %d to master epoch %d\n", clock, epoch, m_epoch)

#define INC(v, cap) if :: v < cap -> v++ :: else -> skip fi

/* Each queue's slot move and slot write; the queue operations below take them. */
#define HB_MOVE(to, from) hb_acks[to] = hb_acks[from]; hb_leaving[to] = hb_leaving[from]; \
	hb_floor[to] = hb_floor[from]; hb_age[to] = hb_age[from]
#define ST_MOVE(to, from) st_acks[to] = st_acks[from]; st_counted[to] = st_counted[from]; \
	st_holds[to] = st_holds[from]; st_floor[to] = st_floor[from]; st_age[to] = st_age[from]
#define HB_PUT(i, leaving) hb_acks[i] = (m_back == b_epoch); hb_leaving[i] = leaving; hb_floor[i] = 1; hb_age[i] = 0
#define ST_PUT(i, holds) st_acks[i] = (b_ack == m_epoch); st_counted[i] = b_ack_counted; \
	st_holds[i] = holds; st_floor[i] = b_ack_floor; st_age[i] = 0

/* remove slot x of a queue; later slots move down */
#define DROP(n, MOVE) \
	for (k : 0 .. SLOTS - 2) { if :: k >= x -> MOVE(k, k + 1) :: else -> skip fi }; \
	n--; x = 0; k = 0

/* deliver slot j: every earlier datagram is now older than one accepted and
 * will be rejected by the epoch/sequence window, so it leaves the network too */
#define CONSUME(n, MOVE) \
	for (k : 0 .. SLOTS - 1) { if :: k + j + 1 < SLOTS -> MOVE(k, k + j + 1) :: else -> skip fi }; \
	n = n - j - 1; k = 0

/* a full queue loses its oldest datagram to make room */
#define SEND(n, MOVE, PUT, v) \
	if \
	:: WIRE_CUT -> skip   /* lost on a cut link (LINKCUT 1) */ \
	:: else -> \
		if :: n == SLOTS -> x = 0; DROP(n, MOVE) :: else -> skip fi; \
		PUT(n, v); n++ \
	fi

#define SEND_STATUS(holds) SEND(st_n, ST_MOVE, ST_PUT, holds)
#define SEND_HEARTBEAT(leaving) SEND(hb_n, HB_MOVE, HB_PUT, leaving)
/* what a master's heartbeat says when nothing else decides: `leaving` while standing down */
#define M_LEAVING (m_state == M_standing_down)

/* Does a frame count? From ACK_RULE 1 on only if it acknowledges the
 * receiver's current epoch. */
#define HB_COUNTS(acks) (!ACK_RULE || (acks))
#define ST_COUNTS(acks) (!ACK_RULE || (acks))
/* "the backup holds nothing": a status that acknowledges the current epoch
 * (every rule) says it holds nothing and, from ACK_RULE 2 on, acknowledges a
 * heartbeat the backup counted; with health checks, one sent since the
 * master's last rejoin (its release floor; Master._rejoin) */
#define RELEASED(acks, counted, holds, floor) ((acks) && !(holds) && (ACK_RULE < 2 || (counted)) && \
	(!HEALTH || !RELEASE_FLOOR || (floor)))

#define B_START_PROBE  b_probe = 1; b_probe_t = PROBE_T; b_probe_snap = PROBE_SEES(m_addr); b_probed = 0; \
	b_probe_held = (LINKCUT && m_addr && !b_probe_snap)
#define M_START_PROBE  m_probe = 1; m_probe_t = PROBE_T; m_probe_snap = PROBE_SEES(b_addr); \
	m_probe_held = (LINKCUT && b_addr && !m_probe_snap)
/* A probe round is several requests over its tick: an address configured
 * throughout it answers the last one if its link is up by then (LINKCUT 1:
 * a cut that ends during the round). One added during the round is not seen
 * (the snapshot at the start, as in every build). */
#define B_END_PROBE  if :: b_probe_held && PROBE_SEES(m_addr) -> b_probe_snap = 1 :: else -> skip fi; b_probe_held = 0
#define M_END_PROBE  if :: m_probe_held && PROBE_SEES(b_addr) -> m_probe_snap = 1 :: else -> skip fi; m_probe_held = 0

/* a host's gratuitous ARP for the address (after its acquire, or the master's
 * Announce) reaches the other host if that one watches. One on its way already
 * stands for both: a detector reacts to the first it sees (acquiring ->
 * master back, failed_over -> recovering) and ignores the rest (recovering).
 * Under links up the handshake leaves nothing to detect: the assertion checks,
 * in every NET_UP run, that conflict detection never fires there (but for
 * LINKCUT 1: after a cut a host may see the other's address announced). */
#define ARP_TO_BACKUP \
	if :: PUBLIC_JOINED && !WIRE_CUT && BACKUP_WATCHES -> assert(NET != NET_UP || LINKCUT); \
		if :: !arp_to_b -> arp_to_b = 1; arp_to_b_age = 0 :: else -> skip fi \
	:: else -> skip fi
#define ARP_TO_MASTER \
	if :: PUBLIC_JOINED && !WIRE_CUT && MASTER_WATCHES -> assert(NET != NET_UP || LINKCUT); \
		if :: !arp_to_m -> arp_to_m = 1; arp_to_m_age = 0 :: else -> skip fi \
	:: else -> skip fi

/* What must happen before time may pass: a deadline reached, an operation at
 * its longest duration, a datagram at its longest delay. */
#define HB_DUE   (hb_n > 0 && hb_age[0] >= DELAY)
#define ST_DUE   (st_n > 0 && st_age[0] >= DELAY)
#define ARP_DUE  ((arp_to_b && arp_to_b_age >= ARP_DELAY) || (arp_to_m && arp_to_m_age >= ARP_DELAY))
#define B_DUE    (b_up && ( \
	(d_state == D_monitoring && (b_silence >= SUSPECT || b_deadline)) || \
	(d_state == D_suspect && b_probe_sched && (b_silence >= PROBE_AT || b_deadline)) || \
	(b_probe && b_probe_t == 0) || \
	(d_state == D_suspect && (b_silence >= FAIL || b_deadline) && b_probed) || \
	(d_state == D_contested && (b_probed || (!b_probe && b_retry_t == 0))) || \
	(b_op && b_op_t >= B_OP_MAX)))
#define M_DUE    (m_up && ( \
	m_hb_t == 0 || \
	(PRESUME && m_state == M_waiting && m_silence >= FAIL) || \
	(m_probe && m_probe_t == 0) || \
	(m_op && m_op_t >= (m_state == M_acquiring -> M_ACQ_MAX : OP_MAX))))

inline backup_crash_reset() {
	b_addr = 0; b_silence = 0; b_deadline = 0; b_probe_sched = 0; b_probe = 0; b_probed = 0;
	b_retry_t = 0; b_op = 0; b_op_t = 0; b_hb_pending = 0; b_ack = 0; b_ack_counted = 0;
	b_ack_floor = 0; d_state = D_monitoring
}

inline master_crash_reset() {
	m_addr = 0; m_probe = 0; m_op = 0; m_op_t = 0; m_silence = 0; m_back = 0;
	m_hb_t = 0; m_stopping = 0; m_state = M_waiting
}

/* the acquiring backup's acquire completed or its release is needed */
inline backup_acquire() {
	if :: !b_fit -> b_acquired_unfit = 1 :: else -> skip fi;   /* property 11: never */
	if :: LINKCUT && b_cut -> b_acquired_cut = 1 :: else -> skip fi;
	d_state = D_acquiring; b_op = 1; b_op_t = 0; b_hb_pending = 0;
	b_deadline = 0; b_probed = 0
}

inline backup_release() {
	d_state = D_recovering; b_op = 1; b_op_t = 0; b_hb_pending = 0
}

/* where it would acquire, an unfit backup declines (Detector._decline): the
 * probe's result no longer matters, nothing is retried */
inline backup_decline() {
	d_state = D_unfit; b_probe = 0; b_probed = 0; b_retry_t = 0
}

/* the master's checks fell while it holds nothing (waiting, probing, or at its
 * start): it stands down at once, a `leaving` heartbeat now and at every
 * interval (Master._stood_down); a probe in flight is ignored */
inline master_stand_down() {
	m_state = M_standing_down; m_probe = 0; SEND_HEARTBEAT(1); m_hb_t = INTERVAL
}

/* its checks pass again (standing down, or by the end of its step-down
 * release): back to waiting, a heartbeat without `leaving` at once, and only a
 * status answering a heartbeat sent from now on says "released" (the release
 * floor, Master._rejoin): every heartbeat sent so far, and so every status
 * acknowledging one, is older than the floor */
inline master_rejoin() {
	m_state = M_waiting;
	if :: REJOIN_PRESUME -> m_silence = 0 :: else -> skip fi;
	if
	:: RELEASE_FLOOR ->
		b_ack_floor = 0;
		for (k : 0 .. SLOTS - 1) { hb_floor[k] = 0; st_floor[k] = 0 };
		k = 0
	:: else -> skip
	fi;
	SEND_HEARTBEAT(0); m_hb_t = INTERVAL
}

/* Zero what no longer matters, so that states differing only in dead values
 * are one state. */
inline normalize() {
	if :: !b_probe -> b_probe_t = 0; b_probe_snap = 0; b_probe_held = 0 :: else -> skip fi;
	if :: !b_probed -> b_answered = 0 :: else -> skip fi;
	if :: d_state != D_contested -> b_retry_t = 0 :: else -> skip fi;
	if :: d_state != D_suspect -> b_probe_sched = 0 :: else -> skip fi;
	/* silence and `leaving` outlive a release (the code keeps last_heard and
	 * the leaving time): they matter wherever the backup can get back to
	 * monitoring without hearing another heartbeat */
	if
	:: d_state == D_monitoring || d_state == D_suspect || d_state == D_recovering ||
	   (d_state == D_acquiring && b_hb_pending) -> skip
	:: d_state == D_unfit ->
		/* past the deadline (it got here at the deadline, and only a heartbeat
		 * that counts moves it back): all that matters when its checks pass */
		b_silence = FAIL; b_deadline = 0
	:: else -> b_silence = 0; b_deadline = 0
	fi;
	if :: d_state != D_acquiring -> b_hb_pending = 0 :: else -> skip fi;
	if :: !b_op -> b_op_t = 0 :: else -> skip fi;
	if :: b_up -> b_down_t = 0 :: else -> skip fi;
	if :: !m_probe -> m_probe_t = 0; m_probe_snap = 0; m_probe_held = 0 :: else -> skip fi;
	if :: !m_op -> m_op_t = 0 :: else -> skip fi;
	if :: !M_MAY_REJOIN -> m_silence = 0 :: else -> skip fi;
	if :: m_state != M_releasing -> m_stopping = 0 :: else -> skip fi;
	if :: m_state != M_holding -> m_reclaim_t = 0 :: else -> skip fi;
	if :: !BACKUP_WATCHES -> arp_to_b = 0 :: else -> skip fi;
	if :: !arp_to_b -> arp_to_b_age = 0 :: else -> skip fi;
	if :: !MASTER_WATCHES -> arp_to_m = 0 :: else -> skip fi;
	if :: WIRE_CUT -> arp_to_b = 0; arp_to_m = 0 :: else -> cut_t = 0 fi;   /* lost on a cut link */
	if :: !arp_to_m -> arp_to_m_age = 0 :: else -> skip fi;
	if :: !(m_addr && b_addr) -> overlap_age = 0 :: else -> skip fi;
	if :: m_up -> m_down_t = 0 :: else -> m_hb_t = 0 fi;
	if :: !(m_up && b_up) -> gap_b = 0; gap_m = 0 :: else -> skip fi;
	if :: !master_dead_backup_up -> takeover_age = 0 :: else -> skip fi;
	if :: master_alone && m_addr -> master_alone = 0 :: else -> skip fi;
	if :: !master_alone -> alone_age = 0 :: else -> skip fi;
	if :: !b_up -> rh_used = 0 :: else -> skip fi;
	if :: !m_up -> rs_used = 0 :: else -> skip fi;
	/* A queue slot past the queue's length holds a delivered or dropped
	 * datagram's fields, which nothing reads. What a frame in flight
	 * acknowledges matters only to a receiver that is up, its flags only if
	 * it counts, and "counted" only in a status that can say "released". */
	for (k : 0 .. SLOTS - 1) {
		if :: !b_up || !ACK_RULE || k >= hb_n -> hb_acks[k] = 0 :: else -> skip fi;
		if :: k >= hb_n || (ACK_RULE && !hb_acks[k]) -> hb_leaving[k] = 0 :: else -> skip fi;
		if :: !m_up || k >= st_n -> st_acks[k] = 0 :: else -> skip fi;
		if :: !st_acks[k] -> st_holds[k] = 0 :: else -> skip fi;
		if :: !st_acks[k] || st_holds[k] || ACK_RULE < 2 -> st_counted[k] = 0 :: else -> skip fi;
		/* the release floor matters only where "released" would otherwise count */
		if :: !HEALTH || k >= hb_n || (ACK_RULE && !hb_acks[k]) -> hb_floor[k] = 0 :: else -> skip fi;
		if :: !HEALTH || !st_acks[k] || st_holds[k] || (ACK_RULE >= 2 && !st_counted[k]) -> st_floor[k] = 0
		   :: else -> skip fi;
		if :: k >= hb_n -> hb_age[k] = 0 :: else -> skip fi;
		if :: k >= st_n -> st_age[k] = 0 :: else -> skip fi
	};
	k = 0;
	if :: ACK_RULE < 2 -> b_ack_counted = 0 :: else -> skip fi;
	if :: !HEALTH || (ACK_RULE >= 2 && !b_ack_counted) -> b_ack_floor = 0 :: else -> skip fi;
	if :: !STEPDOWN_ANTE || b_addr -> stepdown_age = 0 :: else -> skip fi;
	if
	:: !BOTH_UNFIT -> fault_armed = 0
	:: BOTH_UNFIT && m_state == M_standing_down && !BACKUP_HOLDS -> fault_armed = 1
	:: else -> skip
	fi;
	if :: master_back_links_up && m_addr -> master_back_links_up = 0 :: else -> skip fi;
	if :: !master_back_links_up -> failback_age = 0 :: else -> skip fi;
	/* one line per step when a trail is replayed (spin -t); pan never prints */
	printf("STEP t=%d backup[up=%d state=%d addr=%d silence=%d probe=%d/%d op=%d] master[up=%d epoch=%d state=%d addr=%d silence=%d probe=%d/%d op=%d] hb=%d st=%d arp=%d/%d overlap=%d",
		clock, b_up, d_state, b_addr, b_silence, b_probe, b_probed, b_op,
		m_up, m_epoch, m_state, m_addr, m_silence, m_probe, m_probe_snap, m_op, hb_n, st_n,
		arp_to_b, arp_to_m, overlap_age);
	printf(" bepoch=%d recorded=%d/%d replayable=%d/%d fit=%d/%d cut=%d/%d\n", b_epoch, b_ack, m_back, rh_upto, rs_upto,
		b_fit, m_fit, b_cut, m_cut)
}

/* A heartbeat (master epoch ep; acks: it acknowledges the backup's current
 * epoch) reaches the backup, from the network (genuine 1) or replayed by the
 * attacker (genuine 0). One of an older master epoch than the newest recorded
 * is a replay: nothing happens.
 * Otherwise it is recorded (the next status acknowledges it) and answered; it
 * counts only if HB_COUNTS. Within one master epoch a heartbeat that counted
 * was sent after every one that did not (the master acknowledged this backup
 * epoch from then on), so one that does not count arriving later is older:
 * overtaken, the status goes on acknowledging the one that counted, and from
 * ACK_RULE 3 on it is not answered either (OVERTAKEN). */
#define OVERTAKEN(ep, acks) (ACK_RULE >= 3 && (ep) == b_ack && b_ack_counted && !(acks))
inline receive_heartbeat(ep, acks, leaving, floor, genuine) {
		if
		:: !b_up || ep < b_ack || OVERTAKEN(ep, acks) -> skip
		:: else ->
			if
			:: ep > b_ack -> b_ack = ep; b_ack_counted = HB_COUNTS(acks); b_ack_floor = floor
			:: else ->
				/* the newest recorded, unless one that counted overtook it */
				if :: HB_COUNTS(acks) || !b_ack_counted -> b_ack_floor = floor :: else -> skip fi;
				b_ack_counted = (b_ack_counted || HB_COUNTS(acks))
			fi;
			if
			:: !HB_COUNTS(acks) -> skip   /* unacknowledged: answered, otherwise ignored */
			:: HB_COUNTS(acks) && leaving ->
				if :: genuine -> gap_b = 0 :: else -> skip fi;
				b_deadline = 1;        /* the deadline is now; normalize() drops it where it cannot matter */
				if
				:: d_state == D_monitoring ->
					/* @transition detector silence: monitoring -> suspect */
					/* the probe is due at once: it cannot end before a deadline that is now */
					d_state = D_suspect; B_START_PROBE
				:: d_state == D_suspect && b_probe_sched ->
					/* @transition detector probe_due: suspect -> suspect */
					b_probe_sched = 0; B_START_PROBE
				:: else -> skip    /* a probe is running; contested re-probes anyway; holding: nothing to take;
				                      unfit: declined already */
				fi
			:: HB_COUNTS(acks) && !leaving ->
				if :: genuine -> gap_b = 0 :: else -> skip fi;
				b_silence = 0; b_deadline = 0;
				if
				:: d_state == D_monitoring ->
					skip               /* no transition: all is well */
				:: d_state == D_suspect ->
					/* @transition detector heartbeat: suspect -> monitoring */
					/* a scheduled probe is cancelled, a running one's result ignored */
					d_state = D_monitoring; b_probe_sched = 0; b_probe = 0; b_probed = 0
				:: d_state == D_contested ->
					/* @transition detector heartbeat: contested -> monitoring */
					d_state = D_monitoring; b_probe = 0; b_probed = 0
				:: d_state == D_acquiring ->
					/* @transition detector heartbeat: acquiring -> acquiring */
					b_hb_pending = 1
				:: d_state == D_failed_over ->
					/* @transition detector heartbeat: failed_over -> recovering */
					backup_release()
				:: d_state == D_recovering ->
					/* @transition detector heartbeat: recovering -> recovering */
					skip
				:: d_state == D_unfit ->
					/* @transition detector heartbeat: unfit -> monitoring */
					d_state = D_monitoring
				fi
			fi;
			SEND_STATUS(BACKUP_HOLDS)
		fi
}

inline deliver_heartbeat() {
		receive_heartbeat(m_epoch, hb_acks[j], hb_leaving[j], hb_floor[j], 1);
		CONSUME(hb_n, HB_MOVE);
		j = 0
}

/* A status (backup epoch ep; acks: it acknowledges the master's current
 * epoch; counted: and a heartbeat the backup counted) reaches the master,
 * from the network or the attacker, as in receive_heartbeat. The first status
 * of a backup epoch is answered at once (from ACK_RULE 1 on). */
inline receive_status(ep, acks, counted, holds, floor, genuine) {
		if
		:: !m_up || ep < m_back -> skip
		:: else ->
			if
			:: ACK_RULE && ep > m_back -> m_back = ep; SEND_HEARTBEAT(M_LEAVING)
			:: else -> m_back = ep
			fi;
			if
			:: !ST_COUNTS(acks) -> skip   /* unacknowledged: the backup's life or flags now unknown */
			:: else ->
				m_silence = 0;
				if :: genuine -> gap_m = 0 :: else -> skip fi;
				if
				:: HANDSHAKE && m_state == M_waiting && RELEASED(acks, counted, holds, floor) ->
					/* @transition master backup_released: waiting -> acquiring */
					m_state = M_acquiring; m_op = 1; m_op_t = 0
				:: HANDSHAKE && m_state == M_probing && RELEASED(acks, counted, holds, floor) ->
					/* @transition master backup_released: probing -> acquiring */
					m_state = M_acquiring; m_op = 1; m_op_t = 0; m_probe = 0
				:: m_state == M_holding && holds ->
					skip   /* no transition, an alarm: split-brain in progress (never reached under links up) */
				:: else -> skip
				fi
			fi
		fi
}

inline deliver_status() {
		receive_status(b_epoch, st_acks[j], st_counted[j], st_holds[j], st_floor[j], 1);
		CONSUME(st_n, ST_MOVE);
		j = 0
}

active proctype world()
{
	do
	/* ======================= backup (detector) ======================= */
	:: d_step { b_up && d_state == D_monitoring && (b_silence >= SUSPECT || b_deadline) ->
		/* @transition detector silence: monitoring -> suspect */
		d_state = D_suspect;
		if
		:: b_silence >= PROBE_AT || b_deadline ->
			B_START_PROBE    /* already due (back from a release late, or leaving): at once */
		:: else ->
			b_probe_sched = 1   /* to end exactly at the fail deadline */
		fi;
		normalize() }
	:: d_step { b_up && d_state == D_suspect && b_probe_sched && (b_silence >= PROBE_AT || b_deadline) ->
		/* @transition detector probe_due: suspect -> suspect */
		b_probe_sched = 0; B_START_PROBE;
		normalize() }
	:: d_step { b_up && b_probe && b_probe_t == 0 ->
		b_probe = 0; B_END_PROBE;
		if
		:: d_state == D_suspect && (b_silence >= FAIL || b_deadline) ->
			/* The probe ends exactly at the deadline: its result and the
			 * deadline timer reach the core in either order. */
			if
			:: !B_FIT ->
				/* @transition detector probed: suspect -> unfit */
				backup_decline()
			:: B_FIT && !b_probe_snap ->
				/* @transition detector probed: suspect -> acquiring */
				backup_acquire()
			:: B_FIT && b_probe_snap ->
				/* @transition detector probed: suspect -> contested */
				d_state = D_contested; b_retry_t = RETRY
			:: true ->
				b_probed = 1; b_answered = b_probe_snap   /* the deadline decides */
			fi
		:: d_state == D_contested ->
			b_probed = 1; b_answered = b_probe_snap
		:: else -> assert(false)   /* a heartbeat cancels the probe of a suspicion it ends */
		fi;
		normalize() }
	:: d_step { b_up && d_state == D_suspect && (b_silence >= FAIL || b_deadline) && b_probed ->
		if
		:: !B_FIT ->
			/* @transition detector deadline: suspect -> unfit */
			backup_decline()
		:: B_FIT && !b_answered ->
			/* @transition detector deadline: suspect -> acquiring */
			backup_acquire()
		:: B_FIT && b_answered ->
			/* @transition detector deadline: suspect -> contested */
			d_state = D_contested; b_probed = 0; b_retry_t = RETRY
		fi;
		normalize() }
	:: d_step { b_up && d_state == D_contested && b_probed ->
		if
		:: !b_answered && !B_FIT ->
			/* @transition detector probed: contested -> unfit */
			backup_decline()
		:: !b_answered && B_FIT ->
			/* @transition detector probed: contested -> acquiring */
			backup_acquire()
		:: b_answered ->
			/* @transition detector probed: contested -> contested */
			b_probed = 0; b_retry_t = RETRY
		fi;
		normalize() }
	:: d_step { b_up && d_state == D_contested && !b_probe && !b_probed && b_retry_t == 0 ->
		/* @transition detector retry: contested -> contested */
		B_START_PROBE; b_retry_t = RETRY;
		normalize() }
	:: d_step { b_up && b_op && d_state == D_acquiring && b_op_t >= OP_MIN ->
		b_addr = 1; b_op = 0;
		ARP_TO_MASTER;     /* its gratuitous ARP */
		if
		:: b_hb_pending ->
			/* @transition detector acquired: acquiring -> recovering */
			backup_release()
		:: !b_hb_pending && LINKWATCH && b_cut ->
			/* @transition detector acquired: acquiring -> failed_over */
			/* @transition detector link_lost: failed_over -> recovering */
			/* in one settle: an address on a cut link serves nobody */
			backup_release()
		:: else ->
			/* @transition detector acquired: acquiring -> failed_over */
			d_state = D_failed_over
		fi;
		normalize() }
	:: d_step { b_up && b_op && d_state == D_recovering && b_op_t >= OP_MIN ->
		/* @transition detector released: recovering -> monitoring */
		b_addr = 0; b_op = 0; d_state = D_monitoring;
		SEND_STATUS(0);
		normalize() }

	/* a heartbeat reaches the backup; slot 1 overtakes slot 0 (reordering) */
	:: d_step { hb_n > 0 -> j = 0; deliver_heartbeat();
		normalize() }
	:: d_step { hb_n > 1 -> j = 1; deliver_heartbeat();
		normalize() }

	/* the master's ARP for the address reaches the backup's conflict detector */
	:: d_step { arp_to_b -> arp_to_b = 0;
		if
		:: d_state == D_acquiring ->
			/* @transition detector conflict: acquiring -> acquiring */
			/* the master is back: the completed acquire is released at once.
			 * No heartbeat came: silence still counts from the last one, past
			 * the fail deadline (the backup only acquires after it) */
			if :: !b_hb_pending -> b_hb_pending = 1; b_silence = FAIL :: else -> skip fi
		:: d_state == D_failed_over ->
			/* @transition detector conflict: failed_over -> recovering */
			backup_release(); b_silence = FAIL
		:: else -> skip    /* recovering: already letting go */
		fi;
		normalize() }

	/* ======================= master (managed failback) ======================= */
	:: d_step { m_up && m_hb_t == 0 ->
		SEND_HEARTBEAT(M_LEAVING); m_hb_t = INTERVAL;
		normalize() }
	:: d_step { PRESUME && m_up && m_state == M_waiting && m_silence >= FAIL ->
		/* @transition master presume: waiting -> probing */
		m_state = M_probing; M_START_PROBE;
		normalize() }
	:: d_step { m_up && m_probe && m_probe_t == 0 ->
		m_probe = 0; M_END_PROBE;
		if
		:: !m_probe_snap ->
			/* @transition master probed: probing -> acquiring */
			m_state = M_acquiring; m_op = 1; m_op_t = 0
		:: else ->
			/* @transition master probed: probing -> waiting */
			m_state = M_waiting; m_silence = 0
		fi;
		normalize() }
	:: d_step { m_up && m_op && m_state == M_acquiring && m_op_t >= OP_MIN ->
		m_addr = 1; m_op = 0;
		if
		:: M_FIT ->
			/* @transition master acquired: acquiring -> holding */
			/* and tells the backup at once, restarting its heartbeat period */
			m_state = M_holding;
			SEND_HEARTBEAT(0); m_hb_t = INTERVAL
		:: else ->
			/* @transition master acquired: acquiring -> releasing */
			/* its checks fell while the acquire was in flight: let go of what it added
			 * (the row's other condition, a stop during the acquire, is modelled as a crash) */
			m_state = M_releasing; m_stopping = 0; m_op = 1; m_op_t = 0
		fi;
		ARP_TO_BACKUP;     /* its gratuitous ARP */
		normalize() }
	:: d_step { m_up && m_state == M_holding && m_crashes < M_CRASHES ->
		/* @transition master stop: holding -> releasing */
		m_crashes++; m_state = M_releasing; m_stopping = 1; m_op = 1; m_op_t = 0;
		normalize() }
	:: d_step { m_up && m_state == M_releasing && !m_stopping && m_crashes < M_CRASHES ->
		/* @transition master stop: releasing -> releasing */
		/* a stop during a step-down's release: the release finishes, then it stops */
		m_crashes++; m_stopping = 1;
		normalize() }
	:: d_step { m_up && (m_state == M_waiting || m_state == M_probing || m_state == M_standing_down) &&
	            m_crashes < M_CRASHES ->
		/* @transition master stop: waiting -> stopped */
		/* @transition master stop: probing -> stopped */
		/* @transition master stop: standing_down -> stopped */
		m_crashes++; m_state = M_stopped; SEND_HEARTBEAT(1);
		master_crash_reset(); m_up = 0; m_down_t = 0;
		master_dead_backup_up = b_up; takeover_age = 0; master_back_links_up = 0; master_alone = 0;
		normalize() }
	:: d_step { m_up && m_op && m_state == M_releasing && m_op_t >= OP_MIN ->
		m_addr = 0; m_op = 0;
		if
		:: m_stopping ->
			/* @transition master released: releasing -> stopped */
			/* the address is gone; say goodbye, then the daemon exits */
			m_state = M_stopped; SEND_HEARTBEAT(1);
			master_crash_reset(); m_up = 0; m_down_t = 0;
			master_dead_backup_up = b_up; takeover_age = 0; master_back_links_up = 0; master_alone = 0
		:: !m_stopping && !M_FIT ->
			/* @transition master released: releasing -> standing_down */
			master_stand_down()
		:: !m_stopping && M_FIT ->
			/* @transition master released: releasing -> waiting */
			/* its checks rose again during the release */
			master_rejoin()
		fi;
		normalize() }

	/* the backup's ARP for the address reaches the holding master's conflict
	 * detector: no transition, an alarm and an Announce at most once per interval */
	:: d_step { arp_to_m -> arp_to_m = 0;
		if
		:: m_reclaim_t == 0 -> m_reclaim_t = INTERVAL; ARP_TO_BACKUP
		:: else -> skip
		fi;
		normalize() }

	/* a status reaches the master; slot 1 overtakes slot 0 (reordering) */
	:: d_step { st_n > 0 -> j = 0; deliver_status();
		normalize() }
	:: d_step { st_n > 1 -> j = 1; deliver_status();
		normalize() }

	/* ======================= health checks (HEALTH 1) ======================= */
	/* The master's verdict changes (Master.health_changed): at any instant
	 * while it is up; a stopping master ignores it. */
	:: d_step { HEALTH && m_up && flips < FLIPS ->
		flips++; m_fit = !m_fit;
		if
		:: LINKWATCH && m_cut -> skip   /* unfit by its link whatever its checks say */
		:: !m_fit && m_state == M_holding ->
			/* @transition master checks_fail: holding -> releasing */
			/* release first; `leaving` only once the address is gone */
			m_state = M_releasing; m_stopping = 0; m_op = 1; m_op_t = 0
		:: !m_fit && (m_state == M_waiting || m_state == M_probing) ->
			/* @transition master checks_fail: waiting -> standing_down */
			/* @transition master checks_fail: probing -> standing_down */
			master_stand_down()
		:: m_fit && m_state == M_standing_down ->
			/* @transition master checks_pass: standing_down -> waiting */
			master_rejoin()
		:: else -> skip   /* acquiring, releasing: decided when the operation completes */
		fi;
		normalize() }
	/* The backup's verdict changes (Detector.health_changed). */
	:: d_step { HEALTH && b_up && flips < FLIPS ->
		flips++; b_fit = !b_fit;
		if
		:: B_FIT && d_state == D_unfit ->
			/* @transition detector checks_pass: unfit -> suspect */
			/* past the deadline: a fresh probe at once, and its result decides */
			d_state = D_suspect; B_START_PROBE
		:: else -> skip   /* a flag only: it decides at the next deadline; holding, it keeps */
		fi;
		normalize() }

	/* ======================= link cuts (LINKCUT 1) ======================= */
	/* The master's links go down or come back (Master.link_changed). What was
	 * in flight to or from it is lost. Told (LINKWATCH 1), it steps down as an
	 * unhealthy master does and rejoins when its links are up again. */
	:: d_step { LINKCUT && m_up && link_flips < LINK_FLIPS ->
		link_flips++; m_cut = !m_cut; hb_n = 0; st_n = 0;
		if
		:: !WIRE_CUT && cut_t >= FAIL ->   /* back after a cut: links up starts afresh */
			gap_b = RESTORED_GAP; gap_m = RESTORED_GAP
		:: !WIRE_CUT && cut_t < FAIL ->    /* back after a flap: it was loss */
			links_broken = (links_broken || gap_b >= FAIL || gap_m >= FAIL)
		:: else -> skip
		fi;
		if
		:: !LINKWATCH || !m_fit -> skip   /* not told, or unfit by its checks whatever its link */
		:: m_cut && m_state == M_holding ->
			/* @transition master link_down: holding -> releasing */
			/* release at once: an address on a down link is kept by the kernel */
			m_state = M_releasing; m_stopping = 0; m_op = 1; m_op_t = 0
		:: m_cut && (m_state == M_waiting || m_state == M_probing) ->
			/* @transition master link_down: waiting -> standing_down */
			/* @transition master link_down: probing -> standing_down */
			master_stand_down()
		:: !m_cut && m_state == M_standing_down ->
			/* @transition master link_up: standing_down -> waiting */
			master_rejoin()
		:: else -> skip   /* acquiring, releasing: decided when the operation completes */
		fi;
		normalize() }
	/* The backup's links go down or come back (Detector.link_changed). Told, it
	 * releases what it holds (link_lost) and declines to take over while cut. */
	:: d_step { LINKCUT && b_up && link_flips < LINK_FLIPS ->
		link_flips++; b_cut = !b_cut; hb_n = 0; st_n = 0;
		if
		:: !WIRE_CUT && cut_t >= FAIL ->   /* back after a cut: links up starts afresh */
			gap_b = RESTORED_GAP; gap_m = RESTORED_GAP
		:: !WIRE_CUT && cut_t < FAIL ->    /* back after a flap: it was loss */
			links_broken = (links_broken || gap_b >= FAIL || gap_m >= FAIL)
		:: else -> skip
		fi;
		if
		:: LINKWATCH && b_cut && d_state == D_failed_over ->
			/* @transition detector link_lost: failed_over -> recovering */
			backup_release()
		:: LINKWATCH && b_fit && !b_cut ->
			/* up again: the master's silence counts from now (Detector.link_changed),
			 * and a suspicion or a decline that began while cut ends */
			b_silence = 0; b_deadline = 0;
			if
			:: d_state == D_suspect || d_state == D_contested || d_state == D_unfit ->
				/* @transition detector link_up: suspect -> monitoring */
				/* @transition detector link_up: contested -> monitoring */
				/* @transition detector link_up: unfit -> monitoring */
				d_state = D_monitoring; b_probe_sched = 0; b_probe = 0; b_probed = 0
			:: else -> skip
			fi
		:: else -> skip   /* a flag: the deadline rows read it; acquiring: the acquired row does */
		fi;
		normalize() }

	/* ======================= the network ======================= */
	/* (LINKCUT 1: nothing is lost but what a cut loses; the lossy network's
	 * races are the other builds' subject) */
	:: d_step { !LINKCUT && hb_n > 0 -> x = 0; DROP(hb_n, HB_MOVE);
		normalize() }
	:: d_step { !LINKCUT && hb_n > 1 -> x = 1; DROP(hb_n, HB_MOVE);
		normalize() }
	:: d_step { !LINKCUT && st_n > 0 -> x = 0; DROP(st_n, ST_MOVE);
		normalize() }
	:: d_step { !LINKCUT && st_n > 1 -> x = 1; DROP(st_n, ST_MOVE);
		normalize() }

	/* ======================= the attacker ======================= */
	/* It replays a recorded frame of any epoch the receiver takes as new, up to
	 * once per tick per direction (at least the pace of a recording played
	 * back as it was sent: a heartbeat per interval; the bound keeps time
	 * moving). A frame sent before its receiver's epoch existed cannot
	 * acknowledge it: the acknowledgement passed, 0, stands for any earlier
	 * epoch, and from ACK_RULE 1 on a replay never counts, so its flags never
	 * matter. Under ACK_RULE 0, where every replay counts, the model replays
	 * only heartbeats without `leaving` and statuses that do not acknowledge
	 * the current epoch (they cannot: the same argument), which is enough to
	 * find what it finds. REPLAYED_*: a line in a replayed trail (spin -t);
	 * pan never prints. */
	:: d_step { ATTACK && b_up && !rh_used && b_ack <= rh_upto && b_ack > 0 ->
		rh_used = 1; REPLAYED_HEARTBEAT(b_ack);
		receive_heartbeat(b_ack, 0, 0, 0, 0);
		normalize() }
	:: d_step { ATTACK && b_up && !rh_used && b_ack < rh_upto ->
		rh_used = 1; REPLAYED_HEARTBEAT(b_ack + 1);
		receive_heartbeat(b_ack + 1, 0, 0, 0, 0);
		normalize() }
	:: d_step { ATTACK && b_up && !rh_used && b_ack + 1 < rh_upto ->
		rh_used = 1; REPLAYED_HEARTBEAT(b_ack + 2);
		receive_heartbeat(b_ack + 2, 0, 0, 0, 0);
		normalize() }
	:: d_step { ATTACK && b_up && !rh_used && b_ack + 2 < rh_upto ->
		rh_used = 1; REPLAYED_HEARTBEAT(b_ack + 3);
		receive_heartbeat(b_ack + 3, 0, 0, 0, 0);
		normalize() }
	/* a status of the newest backup epoch recorded changes nothing unless it counts */
	:: d_step { ATTACK && m_up && !rs_used && m_back <= rs_upto && m_back > 0 && ST_COUNTS(0) ->
		rs_used = 1; REPLAYED_STATUS(m_back);
		receive_status(m_back, 0, 0, 1, 0, 0);
		normalize() }
	:: d_step { ATTACK && m_up && !rs_used && m_back < rs_upto ->
		rs_used = 1; REPLAYED_STATUS(m_back + 1);
		receive_status(m_back + 1, 0, 0, 1, 0, 0);
		normalize() }
	:: d_step { ATTACK && m_up && !rs_used && m_back + 1 < rs_upto ->
		rs_used = 1; REPLAYED_STATUS(m_back + 2);
		receive_status(m_back + 2, 0, 0, 1, 0, 0);
		normalize() }

	/* ======================= crashes and restarts ======================= */
	:: d_step { m_up && m_crashes < M_CRASHES ->
		m_crashes++; master_crash_reset(); m_up = 0; m_down_t = 0;
		master_dead_backup_up = b_up; takeover_age = 0; master_back_links_up = 0; master_alone = 0;
		normalize() }
	:: d_step { !m_up && m_down_t >= 1 && m_epoch < M_CRASHES + 1 && hb_n == 0 ->
		m_up = 1; m_epoch++; master_crash_reset(); rs_upto = ATTACK * b_epoch;
		/* its checks run once before it sends anything: failing, it never leaves waiting
		 * for its addresses but stands down at once (checks_fail: waiting -> standing_down) */
		if :: !M_FIT -> master_stand_down() :: else -> skip fi;
		master_dead_backup_up = 0; gap_m = 0; gap_b = 0;
		master_back_links_up = (NET == NET_UP && b_up); failback_age = 0;
		master_alone = !b_up; alone_age = 0;
		normalize() }
	:: d_step { b_up && b_crashes < B_CRASHES ->
		b_crashes++; backup_crash_reset(); b_up = 0; b_down_t = 0;
		master_dead_backup_up = 0; master_back_links_up = 0;
		master_alone = (m_up && !m_addr); alone_age = 0;
		normalize() }
	:: d_step { !b_up && b_down_t >= 1 && st_n == 0 ->
		b_up = 1; b_epoch++; backup_crash_reset(); gap_m = 0; gap_b = 0; rh_upto = ATTACK * m_epoch;
		master_alone = 0;
		master_dead_backup_up = !m_up; takeover_age = 0;
		master_back_links_up = (NET == NET_UP && m_up && !m_addr); failback_age = 0;
		normalize() }

	/* ======================= time ======================= */
	:: d_step { !HB_DUE && !ST_DUE && !ARP_DUE && !B_DUE && !M_DUE ->
		clock++;
		for (k : 0 .. SLOTS - 1) {
			if :: k < hb_n -> hb_age[k]++ :: else -> skip fi;
			if :: k < st_n -> st_age[k]++ :: else -> skip fi
		};
		if :: arp_to_b -> arp_to_b_age++ :: else -> skip fi;
		if :: arp_to_m -> arp_to_m_age++ :: else -> skip fi;
		if :: m_addr && b_addr -> INC(overlap_age, OVERLAP_BOUND + 1) :: else -> skip fi;
		if
		:: b_up ->
			INC(b_silence, FAIL);
			if :: b_probe -> b_probe_t-- :: else -> skip fi;
			if :: d_state == D_contested && b_retry_t > 0 -> b_retry_t-- :: else -> skip fi;
			if :: b_op -> b_op_t++ :: else -> skip fi
		:: else -> INC(b_down_t, 1)
		fi;
		if
		:: m_up ->
			if :: m_hb_t > 0 -> m_hb_t-- :: else -> skip fi;
			if :: m_reclaim_t > 0 -> m_reclaim_t-- :: else -> skip fi;
			if :: M_MAY_REJOIN -> INC(m_silence, FAIL) :: else -> skip fi;
			if :: m_probe -> m_probe_t-- :: else -> skip fi;
			if :: m_op -> m_op_t++ :: else -> skip fi
		:: else -> INC(m_down_t, 1)
		fi;
		if
		:: NET == NET_UP && m_up && b_up && WIRE_CUT ->   /* judged when the links return */
			INC(gap_b, FAIL); INC(gap_m, FAIL); INC(cut_t, FAIL)
		:: NET == NET_UP && m_up && b_up && !WIRE_CUT ->
			gap_b++; gap_m++;
			links_broken = (links_broken || gap_b >= FAIL || gap_m >= FAIL)   /* (a flap's end may have set it) */
		:: else -> skip
		fi;
		if :: master_dead_backup_up -> INC(takeover_age, TAKEOVER_BOUND + 1) :: else -> skip fi;
		if :: master_back_links_up -> INC(failback_age, FAILBACK_BOUND + 1) :: else -> skip fi;
		if :: master_alone -> INC(alone_age, PRESUME_BOUND + 1) :: else -> skip fi;
		if :: STEPDOWN_ANTE && !b_addr -> INC(stepdown_age, STEPDOWN_BOUND + 1) :: else -> skip fi;
		rh_used = 0; rs_used = 0;
		normalize() }
	/* a run that breaks its network assumption proves nothing: stop it here */
	if
	:: links_broken -> goto end_links_broken
	:: else -> skip
	fi

	od;
end_links_broken:
	false
}

/* ---- properties (spec/properties.md) ----------------------------------------
 * Run one at a time: pan -N <name>. The bounded-response monitors turn the
 * liveness properties into safety properties with an explicit bound; the
 * *_eventually claims are the unbounded versions, checked for acceptance
 * cycles (pan -a).
 */

/* takeover within TAKEOVER_BOUND ticks of the master's death, failback within
 * FAILBACK_BOUND ticks of its return, and within PRESUME_BOUND ticks of the
 * later of its start and the backup's death while the backup is dead:
 * bounded-response monitors */
#define TAKEOVER_LATE (master_dead_backup_up && takeover_age > TAKEOVER_BOUND && !b_addr)
#define FAILBACK_LATE (master_back_links_up && failback_age > FAILBACK_BOUND && !m_addr)
#define PRESUME_LATE (master_alone && alone_age > PRESUME_BOUND && !m_addr)

/* overlap_bounded: whatever the network, both hosts never have the address
 * configured for more than OVERLAP_BOUND ticks in a row. It is the property
 * for NET_PRIVATE_CUT, where ARP conflict detection ends each overlap; under
 * NET_UP there is no overlap at all, under NET_PARTITION it does not hold. */

ltl no_two_holders { [] (links_broken || !(m_addr && b_addr)) }
ltl overlap_bounded { [] (links_broken || overlap_age <= OVERLAP_BOUND) }
ltl takeover_bounded { [] !TAKEOVER_LATE }
ltl failback_bounded { [] (links_broken || !FAILBACK_LATE) }
ltl presume_bounded { [] (links_broken || !PRESUME_LATE) }
ltl takeover_eventually { [] (master_dead_backup_up -> <> (!master_dead_backup_up || b_addr)) }
ltl failback_eventually { [] (master_back_links_up -> <> (!master_back_links_up || m_addr || links_broken)) }
ltl presume_eventually { [] (master_alone -> <> (!master_alone || m_addr)) }

/* All of the links-up properties above in one run each (what the tests run):
 * the safety claims and bounded-response monitors, and the liveness claims.
 * A counterexample's last step shows which part it breaks. */
ltl links_up_safety { [] (links_broken || (!(m_addr && b_addr) && !TAKEOVER_LATE && !FAILBACK_LATE && !PRESUME_LATE)) }
ltl links_up_liveness {
	[] (master_dead_backup_up -> <> (!master_dead_backup_up || b_addr)) &&
	[] (master_back_links_up -> <> (!master_back_links_up || m_addr || links_broken)) &&
	[] (master_alone -> <> (!master_alone || m_addr)) }

/* Health checks (HEALTH 1; spec/properties.md, 10-12). stepdown_bounded: a
 * master whose checks have fallen has its address taken by a fit backup
 * within STEPDOWN_BOUND ticks of the later of the fall and the backup's
 * rise (both up, links up). unfit_never_acquires: a backup never begins an
 * acquire while its checks fail. both_unfit_nobody_holds: once the master
 * has stood down while the backup holds nothing and both are unfit, nobody
 * holds the address or begins to until one of them is fit again or down.
 * health_safety: all three and no_two_holders, in one run. */
#define STEPDOWN_LATE (STEPDOWN_ANTE && stepdown_age > STEPDOWN_BOUND && !b_addr)
#define FAULT_HELD (fault_armed && (m_addr || BACKUP_HOLDS))
ltl stepdown_bounded { [] (links_broken || !STEPDOWN_LATE) }
ltl unfit_never_acquires { [] !b_acquired_unfit }
ltl both_unfit_nobody_holds { [] !FAULT_HELD }
ltl health_safety { [] (!b_acquired_unfit && !FAULT_HELD && (links_broken || (!(m_addr && b_addr) && !STEPDOWN_LATE))) }
/* Reachability, for the tests (each must have a counterexample): both unfit
 * after the master stood down with the backup holding nothing; and a backup
 * that keeps the address it holds when its checks fall, while the master
 * stands down unfit too (keepalived's FAULT state would release it). */
ltl fault_unreached { [] !fault_armed }

/* Link cuts (LINKCUT 1; spec/properties.md, 13-14). no_two_live_holders: never
 * two holders whose links are up (an address on a cut link answers nobody),
 * the instant the links return included. cut_never_acquires: a backup never
 * begins an acquire while its links are cut. link_safety: both in one run.
 * Reachability (each must have a counterexample): a cut master whose backup
 * holds the address, and a cut backup whose master holds it. */
#define TWO_LIVE_HOLDERS (m_addr && !m_cut && b_addr && !b_cut)
ltl no_two_live_holders { [] (links_broken || !TWO_LIVE_HOLDERS) }
ltl cut_never_acquires { [] !b_acquired_cut }
ltl link_safety { [] (!b_acquired_cut && (links_broken || !TWO_LIVE_HOLDERS)) }
ltl master_cut_unreached { [] !(m_cut && b_addr) }
ltl backup_cut_unreached { [] !(b_cut && m_addr) }
ltl unfit_backup_never_holds { [] !(BOTH_UNFIT && m_state == M_standing_down && b_addr) }
