/*
 * backups.pml -- a master (heartbeatd with managed failback) and two backups
 * (failoverd with --peer ADDR=PRIORITY and --priority), the frames between all
 * three and the ARP probe on the shared public network, in discrete time: the
 * second design of spec/backups.md (issue 13), "announce, then acquire".
 *
 * What is modelled and abstracted, the builds and what each found:
 * spec/backups.md, "The model (spec/backups.pml)"; the checks:
 * tests/test_spec_backups.py.
 *
 * Hosts: 0 the master, 1 the higher backup (B1), 2 the lower (B2). One
 * process drives the world; each loop iteration takes one event (a host acts,
 * the network delivers or loses a frame, a host crashes or restarts, the link
 * between the backups is cut) or lets one tick pass. Time passes only when
 * nothing is due, as in spec/failover.pml; events at one instant interleave in
 * every order.
 *
 * Frames and freshness follow failover.pml's abstraction (spec/README.md,
 * "Freshness and the replaying attacker"): a receiver records every frame of
 * its sender's current life, and a frame counts only if it acknowledges the
 * receiver's current life (knows[] below); one that does not is answered at
 * once (the handshake). The attacker is left out: failover.pml proves that
 * under the rule (ACK_RULE 3) a replay never counts, and peer frames have the
 * same guard (one ReplayGuard per peer, spec/backups.md, "Peer frames"). What a
 * replay can still do here, put a dead peer into the wait set W, costs time,
 * never safety (the wait set only ever delays an acquire).
 */

/* ---- configuration (override with spin -D...) ---------------------------- */

#define INTERVAL 2          /* ticks between frames (1 s = 2 ticks)                 */
#define FAIL     (3 * INTERVAL)   /* fail_misses = 3: the failure timeout (also a peer's) */
#define PROBE_T  1          /* an ARP probe round (0.3 s rounded up to a tick)      */
#define RETRY    INTERVAL   /* contested: re-probe every retry interval             */
#define OP_MIN   1          /* an acquire or release completes OP_MIN..OP_MAX ticks  */
#ifndef OP_MAX
#define OP_MAX   2          /*   after it starts                                    */
#endif
#define DELAY    1          /* a frame arrives 0..DELAY ticks after it is sent, or is lost */

/* ANNOUNCE 1 (the design): at its deadline a backup whose wait set W is not
 * empty announces (says holds, adds nothing) and acquires only when W is empty.
 * 0: the first design, acquiring at the deadline (finding 3 of "What spin
 * found", a restart race with the links up). */
#ifndef ANNOUNCE
#define ANNOUNCE 1
#endif

/* The rank delay: a backup's failure deadline is later by rank x RANK_STEP.
 * Default: fail_after + probe + 2 x interval (11 ticks), the step this model
 * proposes (spec/backups.md, "What spin found", fix 1). The
 * second design's fail_after + probe + interval is -DRANK_STEP=9, the first
 * design's probe + interval -DRANK_STEP=3 (both: two holders under a cut, BCUT=2). */
#ifndef RANK_STEP
#define RANK_STEP (FAIL + PROBE_T + 2 * INTERVAL)
#endif

/* RANK_CONFIGURED 1 (the design): a backup's rank is the number of configured
 * peers with a higher priority. 0: the first design's "as last heard, a peer
 * never heard counting as higher" (finding 1, with BCUT=1). */
#ifndef RANK_CONFIGURED
#define RANK_CONFIGURED 1
#endif

/* HIGHER_WAIT 1 (fix 2 of spec/backups.md, "What spin found"): a lower backup treats a higher peer as present (it
 * defers, and does not announce or acquire) until nothing of it has counted for
 * fail_after + rank x step, not just fail_after: the higher one, announcing when
 * the link between them was cut, acquires up to a failure timeout after its last
 * counted frame of the lower, so the lower must look that much later too.
 * 0: the design as written (two holders with BCUT=1). */
#ifndef HIGHER_WAIT
#define HIGHER_WAIT 1
#endif

/* BCUT 1: the link between the backups is cut at some instant (from the
 * start, or any time later) and stays cut: every frame between them is lost.
 * BCUT 2: cut from the start (a narrowing of 1: the backups never hear each other).
 * BCUT 3: B1's frames to B2 lost from some instant on, B2's to B1 still arriving
 * (a one-way loss: spec/backups.md, "What the review found", 2); links up otherwise.
 * The master's frames to and from each backup still follow links up, and the
 * public network is shared (the ARP probe sees every configured address). */
#ifndef BCUT
#define BCUT 0
#endif

/* LOSSES: frames the network loses in a run (besides those a newer frame
 * replaces and those a cut loses); links up bounds the gaps in any case. */
#ifndef LOSSES
#define LOSSES 2
#endif

#ifndef M_CRASHES
#define M_CRASHES 1         /* master crashes in a run                              */
#endif
#ifndef M_RESTARTS
#define M_RESTARTS 1        /* 0: a crashed master stays dead                      */
#endif
/* MCUT 1: from the master's restart on, its heartbeats to B1 are lost (one way: B1
 * then sends it nothing, as statuses answer heartbeats), B1 still hearing B2; the
 * master restarts only while B2 holds and B1, up, defers or is contested (a narrowing:
 * otherwise B1 and the restarted master may both take over at the same failure
 * timeout from the restart, a pair's race too under a one-way loss, which "links up"
 * excludes). The review's failback race (spec/backups.md,
 * "What the review found", 1). */
#ifndef MCUT
#define MCUT 0
#endif
/* LATE_LOSSES 1 (with MCUT, a narrowing): the LOSSES are lost only from the master's restart on
 * (the race's losses are on B1's announcement round trip after it); 0: at any instant. */
#ifndef LATE_LOSSES
#define LATE_LOSSES 0
#endif

/* RELEASE_SETTLE 1 (the review's fix 1): the master presumes a silent backup only
 * SETTLE ticks after the latest counted release of any backup; 0: at once. */
#ifndef RELEASE_SETTLE
#define RELEASE_SETTLE 1
#endif
#define SETTLE (FAIL + RETRY + 3 * INTERVAL)

/* ANN_LIMIT 1 (the review's fix 2): an announcement still waiting LIMIT ticks after
 * its entry is withdrawn to suspect, and a fresh probe decides; 0: no limit. */
#ifndef ANN_LIMIT
#define ANN_LIMIT 1
#endif
#define LIMIT (FAIL + 2 * INTERVAL)

/* PEER_MASTER 1 (the design closing the review's open race, spec/backups.md, "What the review
 * found", 1): a backup's peer frames say "master heard" while it counted a heartbeat within
 * MH_WINDOW ticks (W = min(fail_after, 2 x interval + allowance) = 2.2 s, 4.4 ticks, rounded up);
 * a backup that counts such a frame while its own last counted heartbeat is older than
 * MH_WINDOW + 2 x DELAY (W + M, M the two delays) takes it as evidence that the master is
 * alive and that its heartbeats do not reach it: while the peer is alive and its last counted
 * frame says so, it does not take over (it defers; announcing, it withdraws to deferring).
 * 0: no flag (the settle alone). */
#ifndef PEER_MASTER
#define PEER_MASTER 1
#endif
#ifndef MH_WINDOW
#define MH_WINDOW 5
#endif
#define MH_CAP (MH_WINDOW + 2 * DELAY + 1)   /* hbt at the cap: older than W + M (or never) */

#ifndef B_CRASHES
#define B_CRASHES 1         /* backup crashes in a run, both backups together      */
#endif
#ifndef CRASHING
#define CRASHING 0          /* which backup may crash: 0 either, 1 only B1, 2 only B2 */
#endif
#ifndef CRASH_DEAD
#define CRASH_DEAD 0        /* 1: a backup crashes only while the master is down (a narrowing) */
#endif

/* Bounds (ticks) of the bounded-response monitors; spec/backups.md derives them. */
#ifndef TAKEOVER_BOUND
#define TAKEOVER_BOUND (DELAY + FAIL + RANK_STEP + PROBE_T + OP_MAX)
#endif
/* HIGHER_BOUND: with PEER_MASTER a B1 that never counted a heartbeat (the master died in its
 * handshake) defers to B2's "master heard" until it clears, W after B2's last heartbeat, and
 * probes then: MH_WINDOW + DELAY + PROBE_T instead of FAIL (7 ticks, not 6; spec/backups.md). */
#if PEER_MASTER && MH_WINDOW + DELAY + PROBE_T > FAIL
#define HIGHER_DETECT (MH_WINDOW + DELAY + PROBE_T)
#else
#define HIGHER_DETECT FAIL
#endif
#ifndef HIGHER_BOUND
#define HIGHER_BOUND (DELAY + HIGHER_DETECT + DELAY + INTERVAL + DELAY + OP_MAX)
#endif

/* MONITORS 0: leave out the clocks of the two bounded-response monitors (a
 * build that checks no_two_holders only: a tenth of the states, or less) */
#ifndef MONITORS
#define MONITORS 1
#endif

#define AGE_CAP ((TAKEOVER_BOUND > HIGHER_BOUND -> TAKEOVER_BOUND : HIGHER_BOUND) + 1)
#define DLMAX (FAIL + RANK_STEP)   /* the latest failure deadline (rank 1)       */

/* ---- states ---------------------------------------------------------------- */

/* the master (a crash is its only way down; no clean stop, no health checks) */
#define M_waiting   0
#define M_probing   1
#define M_acquiring 2
#define M_holding   3

/* a backup */
#define D_monitoring 0   /* hearing the master (suspect folded in: the probe is timed to end at the deadline) */
#define D_suspect    1   /* its takeover probe runs; the result decides                  */
#define D_deferring  2   /* past the deadline, deferring to a holder or a higher peer    */
#define D_contested  3   /* the probe found the address: re-probe every RETRY            */
#define D_acquiring  4
#define D_failed_over 5
#define D_recovering 6
#define D_announcing 7   /* says holds, adds nothing, waits for its wait set W to empty  */

/* ---- the world --------------------------------------------------------------- */

bool up[3] = 1;
bool addr[3];             /* the address configured on host i                    */

/* knows[r*3+s]: r has recorded a frame of s's current life, so r's frames to s
 * acknowledge s (and count there). A restart clears what others know of the
 * restarted host and what it knows of them. */
bool knows[9];

/* One frame in flight per direction, channel s*3+r (s sends, r receives). A
 * frame sent while an older one is in flight replaces it: the older is lost
 * (the network may lose it; what is left out is the older arriving after the
 * newer was sent, spec/README.md). */
bool f_in[9];
bool f_age[9];            /* 0..DELAY ticks since it was sent                     */
bool f_acks[9];           /* it acknowledges the receiver's current life          */
bool f_holds[9];          /* a backup's frame: it holds, or announces, acquires or releases */
bool f_cnt[9];            /* a status: the heartbeat it acknowledges counted at the backup */
bool f_post[9];           /* a peer frame of an announcing backup, sent at or after its announcement:
                             its sequence number is >= announce_seq */
bool f_ackann[9];         /* a peer frame acknowledging one with f_post: ack_seq >= the receiver's
                             announce_seq (and it acknowledges the receiver's current life) */
bool f_mh[9];             /* PEER_MASTER: a peer frame saying "master heard" (its sender's hbt < MH_WINDOW) */

/* the master */
byte m_state;
byte m_hb_t;              /* ticks to its next heartbeats (one per backup)       */
byte m_sil[3];            /* ticks since a counted status of backup i (cap FAIL) */
bool rel[3];              /* backup i's last counted status said "released" (and answered a counted heartbeat) */
byte m_rel_t;             /* ticks since a backup's release last began to count (cap SETTLE) */
bool mcut;                /* MCUT 1: the master's heartbeats to B1 are lost */
bool m_probe;
bool m_probe_t;
bool m_snap;
byte m_op_t;
byte m_crashes;
byte m_down_t;

/* the backups (index 1 and 2; 0 unused) */
byte d[3];
byte sil[3];              /* ticks since a counted heartbeat (cap DLMAX)          */
bool probe[3];
bool probe_t[3];
bool snap[3];             /* what the running probe saw when it looked            */
byte op_t[3];
bool hbp[3];              /* acquiring: a heartbeat, or a higher peer's holds, came: release after it */
byte retry_t[3];
bool hbc[3];              /* it counted a heartbeat of the master's current life  */
byte pa[3];               /* ticks since it counted a frame of its peer (cap FAIL; FAIL: not alive) */
bool ph[3];               /* its peer's last counted frame said `holds`            */
bool heard[3];            /* it has heard its peer's priority since its start (RANK_CONFIGURED 0) */
byte pt[3];               /* ticks to its next peer frame                         */
byte pr[3];               /* ticks since it recorded a frame of its peer (cap FAIL) */
bool pl_cnt[3];           /* the life of the peer's newest recorded frame has counted here */
byte w_t[3];              /* announcing: ticks since the peer's last counted frame (or, in its
                             handshake, its last recorded one before the entry); FAIL: it left W */
byte ann_t[3];            /* announcing: ticks since its entry (cap LIMIT) */
bool rec_ann[3];          /* it recorded a frame its (announcing) peer sent at or after the announcement */
byte hbt[3];              /* PEER_MASTER: ticks since it counted a heartbeat (cap MH_CAP: older than W + M, or never) */
bool pm[3];               /* PEER_MASTER: its alive peer's last counted frame said "master heard" and was
                             newer than its own last counted heartbeat by W + M: the master is alive */
byte b_crashes;
byte down_t[3];
bool bcut;                /* BCUT 1: the link between the backups is cut          */

/* links up: gap[c] ticks without a counted frame on channel c while both ends
 * are up (and, for a backup-backup channel, the link is not cut) */
byte gap[9];
bool links_broken;
byte losses;

/* monitors */
bool dead_ante;           /* the master down, some backup up                     */
byte dead_age;            /* ticks since the later of the master's death and the last backup crash or restart */
bool high_ok;             /* B1 was up at the master's death and has not crashed since, and B2 was not
                             taking or holding the address then */

hidden byte c;            /* scratch: a channel */
hidden byte sc;           /* scratch: the channel a frame is sent on */
hidden byte k;
hidden int clock;

#define INC(v, cap) if :: v < cap -> v++ :: else -> skip fi

#define BHOLDS(i) (d[i] == D_announcing || d[i] == D_acquiring || d[i] == D_failed_over || \
	d[i] == D_recovering || addr[i])
#define BUSY(i)   (d[i] == D_announcing || d[i] == D_acquiring || d[i] == D_failed_over || d[i] == D_recovering)
/* rank: configured (B2 is outranked by B1), or as last heard, a peer never heard counting as higher */
#define RANK(i)   ((i) == 2 || (!RANK_CONFIGURED && !heard[1]))
#define DL(i)     (FAIL + RANK(i) * RANK_STEP)
#define ALIVE(i)  (pa[i] < FAIL)
/* B2's view of B1: present (it outranks us and may be taking over) */
#define PA_CAP    (HIGHER_WAIT -> FAIL + RANK_STEP : FAIL)
#define PRESENT2  (pa[2] < PA_CAP)
/* recorded within the failure timeout, its current life not yet counted (in its handshake) */
#define RECORDED(i) (pr[i] < FAIL && !pl_cnt[i])
/* the wait set at the entry into announcing: the peer is in it */
#define IN_W(i)   (ALIVE(i) || RECORDED(i))
/* spec/backups.md, "Who takes over": no alive peer says it holds, no alive
 * (fit: health is not modelled) peer has a higher priority */
#define PM(i)     (PEER_MASTER && ALIVE(i) && pm[i])
#define MAY_TAKE(i) (!(ALIVE(i) && ph[i]) && !((i) == 2 && PRESENT2) && !PM(i))
/* the lower yields to a higher holder (or announcer) */
#define YIELDS(i) ((i) == 2 && d[2] == D_failed_over && ALIVE(2) && ph[2])
#define BB_CUT(s, r) (BCUT && bcut && (s) > 0 && (r) > 0 && (BCUT != 3 || (s) == 1))

inline send(s, r, acks, holds, cnt) {
	sc = (s) * 3 + (r);
	if
	:: !up[r] || BB_CUT(s, r) -> skip   /* lost */
	:: else -> f_in[sc] = 1; f_age[sc] = 0; f_acks[sc] = acks; f_holds[sc] = holds; f_cnt[sc] = cnt
	fi;
	sc = 0
}
#define SEND_HB(r)   if :: (r) == 1 && mcut -> skip :: else -> send(0, r, knows[r], 0, 0) fi
#define SEND_ST(i)   send(i, 0, knows[(i) * 3], BHOLDS(i), hbc[i])

/* a peer frame of i: what it says, and what of its peer's announcement it acknowledges */
inline send_peer(i) {
	sc = (i) * 3 + 3 - (i);
	if
	:: !up[3 - (i)] || BB_CUT(i, 3 - (i)) -> skip   /* lost */
	:: else -> f_in[sc] = 1; f_age[sc] = 0; f_acks[sc] = knows[sc]; f_holds[sc] = BHOLDS(i); f_cnt[sc] = 0;
		f_post[sc] = (d[i] == D_announcing);
		f_ackann[sc] = (rec_ann[i] && knows[sc]);
		f_mh[sc] = (PEER_MASTER && hbt[i] < MH_WINDOW)
	fi;
	sc = 0
}

#define START_PROBE(i) probe[i] = 1; probe_t[i] = PROBE_T; \
	snap[i] = (addr[0] || addr[3 - (i)])

inline backup_acquire(i) {
	d[i] = D_acquiring; op_t[i] = 0; hbp[i] = 0;
	send_peer(i)   /* what it says changed: at once */
}

/* The design's point 3: where it would acquire, a backup whose wait set is not
 * empty announces first. Entry: what it says changes to holds (to the master at
 * its next status, to the peer at once); announce_seq is this frame's number. */
inline backup_announce(i) {
	d[i] = D_announcing; ann_t[i] = 0;
	/* W's silence clock: since the peer's last counted frame, or, for a peer in its
	 * handshake (recorded, that life not counted), since the later recording */
	if
	:: RECORDED(i) && pr[i] < pa[i] -> w_t[i] = pr[i]
	:: else -> w_t[i] = pa[i]
	fi;
	send_peer(i)
}

/* withdraw, to deferring or monitoring: nothing added, so "holds nothing" at once */
inline withdraw(i, to) {
	d[i] = to; w_t[i] = 0;
	send_peer(i)
}

/* a heartbeat reaches backup i: recorded, answered; it counts if it acknowledges i */
inline receive_heartbeat(i) {
	knows[(i) * 3] = 1;
	if
	:: f_acks[i] ->
		gap[i] = 0; sil[i] = 0; hbc[i] = 1; pm[i] = 0;
		if
		:: d[i] == D_suspect || d[i] == D_deferring || d[i] == D_contested ->
			d[i] = D_monitoring; probe[i] = 0
		:: d[i] == D_announcing -> withdraw(i, D_monitoring)
		:: d[i] == D_acquiring -> hbp[i] = 1
		:: d[i] == D_failed_over -> d[i] = D_recovering; op_t[i] = 0
		:: else -> skip
		fi;
		if
		:: PEER_MASTER && hbt[i] >= MH_WINDOW -> hbt[i] = 0; send_peer(i)   /* "master heard" again: at once */
		:: else -> hbt[i] = 0
		fi
	:: else -> skip
	fi;
	f_in[i] = 0;
	SEND_ST(i)
}

/* a status of backup i reaches the master: a new life is answered at once */
inline receive_status(i) {
	c = (i) * 3;
	f_in[c] = 0;
	if
	:: f_acks[c] -> gap[c] = 0; m_sil[i] = 0;
		if :: !rel[i] && !f_holds[c] && f_cnt[c] -> m_rel_t = 0 :: else -> skip fi;   /* a release begins to count */
		rel[i] = (!f_holds[c] && f_cnt[c])
	:: else -> skip
	fi;
	if :: !knows[i] -> knows[i] = 1; SEND_HB(i) :: else -> skip fi;
	c = 0
}

/* a peer frame of s reaches backup r: recorded (its priority heard); it counts
 * if it acknowledges r, else it is answered at once (the handshake). Counted,
 * while r announces: it leaves W if it acknowledges the announcement and holds
 * nothing; a higher one saying holds makes r withdraw. Acquiring, a higher
 * one saying holds: r releases as soon as its acquire completes. */
inline receive_peer(r, s) {
	c = (s) * 3 + (r);
	f_in[c] = 0; heard[r] = 1;
	if :: !knows[(r) * 3 + (s)] -> pl_cnt[r] = 0 :: else -> skip fi;   /* the first of this life */
	knows[(r) * 3 + (s)] = 1; pr[r] = 0;
	if :: f_post[c] -> rec_ann[r] = 1 :: else -> skip fi;
	if
	:: f_acks[c] ->
		gap[c] = 0; pa[r] = 0; ph[r] = f_holds[c]; pl_cnt[r] = 1;
		pm[r] = (f_mh[c] && hbt[r] >= MH_CAP);
		if
		:: ANNOUNCE && d[r] == D_announcing ->
			w_t[r] = 0;
			if
			:: PM(r) -> withdraw(r, D_deferring)   /* the master is alive: wait */
			:: !PM(r) && f_ackann[c] && !f_holds[c] -> backup_acquire(r)   /* W is empty */
			:: !PM(r) && (r) == 2 && f_holds[c] -> withdraw(r, D_deferring)
			:: else -> skip   /* a lower peer that holds yields; or not yet acknowledged */
			fi
		:: ANNOUNCE && d[r] == D_acquiring && (r) == 2 && f_holds[c] -> hbp[r] = 1
		:: else -> skip
		fi
	:: else -> send_peer(r)
	fi;
	c = 0
}

inline backup_reset(i) {
	addr[i] = 0; d[i] = D_monitoring; sil[i] = 0; probe[i] = 0; probe_t[i] = 0; snap[i] = 0;
	op_t[i] = 0; hbp[i] = 0; retry_t[i] = 0; hbc[i] = 0; pa[i] = ((i) == 2 -> PA_CAP : FAIL); ph[i] = 0; heard[i] = 0; pt[i] = 0;
	pr[i] = FAIL; pl_cnt[i] = 0; w_t[i] = 0; ann_t[i] = 0; rec_ann[i] = 0; hbt[i] = MH_CAP; pm[i] = 0
}

inline master_reset() {
	addr[0] = 0; m_state = M_waiting; m_hb_t = 0; m_sil[1] = 0; m_sil[2] = 0; rel[1] = 0; rel[2] = 0; m_rel_t = SETTLE;
	m_probe = 0; m_probe_t = 0; m_snap = 0; m_op_t = 0
}

#define TWO_HOLDERS ((addr[0] && addr[1]) || (addr[0] && addr[2]) || (addr[1] && addr[2]))

/* zero what no longer matters */
inline normalize() {
	for (k : 0 .. 8) {
		if :: !f_in[k] -> f_age[k] = 0; f_acks[k] = 0; f_holds[k] = 0; f_cnt[k] = 0; f_post[k] = 0; f_ackann[k] = 0;
		      f_mh[k] = 0
		   :: else -> skip fi;
		if :: f_in[k] && k % 3 != 0 -> f_cnt[k] = 0 :: else -> skip fi   /* only statuses carry it */
	};
	k = 0;
	if :: !up[0] -> m_hb_t = 0 :: else -> m_down_t = 0 fi;
	if :: !m_probe -> m_probe_t = 0; m_snap = 0 :: else -> skip fi;
	if :: m_state != M_acquiring -> m_op_t = 0 :: else -> skip fi;
	if :: m_state == M_holding || !up[0] -> m_sil[1] = 0; m_sil[2] = 0; rel[1] = 0; rel[2] = 0 :: else -> skip fi;
	if :: m_state == M_holding || m_state == M_acquiring || !up[0] || !RELEASE_SETTLE -> m_rel_t = SETTLE :: else -> skip fi;
	for (k : 1 .. 2) {
		if :: !probe[k] -> probe_t[k] = 0; snap[k] = 0 :: else -> skip fi;
		if :: d[k] != D_contested -> retry_t[k] = 0 :: else -> skip fi;
		if :: d[k] != D_acquiring && d[k] != D_recovering -> op_t[k] = 0 :: else -> skip fi;
		if :: d[k] != D_acquiring -> hbp[k] = 0 :: else -> skip fi;
		/* past the deadline where it cannot get back to monitoring without a heartbeat */
		if
		:: d[k] == D_deferring || d[k] == D_contested || d[k] == D_failed_over || d[k] == D_announcing ||
		   (d[k] == D_acquiring && !hbp[k]) || d[k] == D_suspect -> sil[k] = DLMAX
		:: else -> skip
		fi;
		if :: !ALIVE(k) -> ph[k] = 0; pm[k] = 0 :: else -> skip fi;
		if :: !PEER_MASTER -> hbt[k] = 0; pm[k] = 0 :: else -> skip fi;
		if :: up[k] -> down_t[k] = 0 :: else -> pt[k] = 0 fi;
		/* what only an announcement reads */
		if
		:: !ANNOUNCE -> pr[k] = 0; pl_cnt[k] = 0
		:: ANNOUNCE && pl_cnt[k] -> pr[k] = 0   /* RECORDED reads it only while that life is not counted */
		:: else -> skip
		fi;
		if
		:: d[k] != D_announcing ->
			w_t[k] = 0; ann_t[k] = 0; rec_ann[3 - k] = 0; f_post[k * 3 + 3 - k] = 0; f_ackann[(3 - k) * 3 + k] = 0
		:: else -> skip
		fi;
		if :: !RANK_CONFIGURED -> skip :: else -> heard[k] = 0 fi
	};
	k = 0;
	if :: !MONITORS -> dead_ante = 0 :: else -> skip fi;
	if :: !dead_ante -> dead_age = 0; high_ok = 0 :: else -> skip fi;
	printf("STEP t=%d master[up=%d state=%d addr=%d sil=%d/%d rel=%d/%d probe=%d/%d] ",
		clock, up[0], m_state, addr[0], m_sil[1], m_sil[2], rel[1], rel[2], m_probe, m_snap);
	printf("b1[up=%d state=%d addr=%d sil=%d probe=%d/%d peer=%d/%d rec=%d/%d w=%d ann=%d] ",
		up[1], d[1], addr[1], sil[1], probe[1], snap[1], pa[1], ph[1], pr[1], pl_cnt[1], w_t[1], rec_ann[1]);
	printf("b2[up=%d state=%d addr=%d sil=%d probe=%d/%d peer=%d/%d rec=%d/%d w=%d ann=%d] ",
		up[2], d[2], addr[2], sil[2], probe[2], snap[2], pa[2], ph[2], pr[2], pl_cnt[2], w_t[2], rec_ann[2]);
	printf("mcut=%d rel_t=%d hbt=%d/%d pm=%d/%d ", mcut, m_rel_t, hbt[1], hbt[2], pm[1], pm[2]);
	printf("cut=%d frames=%d%d%d%d%d%d\n", bcut, f_in[1], f_in[2], f_in[3], f_in[6], f_in[5], f_in[7]);
	if :: TWO_HOLDERS -> printf("HOLDERS 2\n") :: else -> skip fi
}

/* What must happen before time may pass. */
#define F_DUE (f_in[1] && f_age[1] >= DELAY || f_in[2] && f_age[2] >= DELAY || \
	f_in[3] && f_age[3] >= DELAY || f_in[5] && f_age[5] >= DELAY || \
	f_in[6] && f_age[6] >= DELAY || f_in[7] && f_age[7] >= DELAY)
#define M_ALL_RELEASED (rel[1] && rel[2])
#define M_MAY_PRESUME ((rel[1] || m_sil[1] >= FAIL) && (rel[2] || m_sil[2] >= FAIL) && !M_ALL_RELEASED && \
	m_rel_t >= SETTLE)
#define M_DUE (up[0] && (m_hb_t == 0 || \
	(m_state == M_waiting && (M_ALL_RELEASED || M_MAY_PRESUME)) || \
	(m_state == M_probing && (M_ALL_RELEASED || m_probe_t == 0)) || \
	(m_state == M_acquiring && m_op_t >= OP_MAX)))
#define B_DUE(i) (up[i] && (pt[i] == 0 || \
	(d[i] == D_monitoring && sil[i] + PROBE_T >= DL(i)) || \
	(probe[i] && probe_t[i] == 0) || \
	(d[i] == D_deferring && MAY_TAKE(i)) || \
	(d[i] == D_contested && retry_t[i] == 0) || \
	(d[i] == D_announcing && w_t[i] >= FAIL) || \
	(ANN_LIMIT && d[i] == D_announcing && ann_t[i] >= LIMIT) || \
	YIELDS(i) || \
	((d[i] == D_acquiring || d[i] == D_recovering) && op_t[i] >= OP_MAX)))

/* One backup's steps (i is 1 or 2). */
#define BACKUP(i) \
	:: d_step { up[i] && d[i] == D_monitoring && sil[i] + PROBE_T >= DL(i) -> \
		/* timed to end at its failure deadline: fail_after + rank x step */ \
		d[i] = D_suspect; START_PROBE(i); \
		normalize() } \
	:: d_step { up[i] && probe[i] && probe_t[i] == 0 -> \
		probe[i] = 0; assert(d[i] == D_suspect); \
		if \
		:: snap[i] -> d[i] = D_contested; retry_t[i] = RETRY \
		:: !snap[i] && MAY_TAKE(i) && ANNOUNCE && IN_W(i) -> backup_announce(i) \
		:: !snap[i] && MAY_TAKE(i) && !(ANNOUNCE && IN_W(i)) -> backup_acquire(i) \
		:: else -> d[i] = D_deferring \
		fi; \
		normalize() } \
	:: d_step { up[i] && d[i] == D_deferring && MAY_TAKE(i) -> \
		/* the condition became true, the master still silent: suspect afresh */ \
		d[i] = D_suspect; START_PROBE(i); \
		normalize() } \
	:: d_step { up[i] && d[i] == D_contested && retry_t[i] == 0 -> \
		d[i] = D_suspect; START_PROBE(i); \
		normalize() } \
	:: d_step { up[i] && d[i] == D_announcing && w_t[i] >= FAIL -> \
		/* nothing of the peer counted for a failure timeout: it left W */ \
		backup_acquire(i); \
		normalize() } \
	:: d_step { ANN_LIMIT && up[i] && d[i] == D_announcing && ann_t[i] >= LIMIT && w_t[i] < FAIL -> \
		/* unanswered for the limit: withdraw, and a fresh probe decides */ \
		withdraw(i, D_suspect); START_PROBE(i); \
		normalize() } \
	:: d_step { up[i] && d[i] == D_acquiring && op_t[i] >= OP_MIN -> \
		addr[i] = 1; \
		if \
		:: hbp[i] -> d[i] = D_recovering; op_t[i] = 0 \
		:: else -> d[i] = D_failed_over \
		fi; \
		normalize() } \
	:: d_step { YIELDS(i) && up[i] -> \
		d[i] = D_recovering; op_t[i] = 0; \
		normalize() } \
	:: d_step { up[i] && d[i] == D_recovering && op_t[i] >= OP_MIN -> \
		/* "I hold nothing", to the master and the peer, at once, only once the delete returned */ \
		addr[i] = 0; d[i] = D_monitoring; \
		SEND_ST(i); send_peer(i); \
		normalize() } \
	:: d_step { up[i] && pt[i] == 0 -> \
		send_peer(i); pt[i] = INTERVAL; \
		normalize() }

/* a backup's crash or restart while the master is dead starts the takeover period afresh */
inline backups_changed(i) {
	dead_ante = (!up[0] && (up[1] || up[2])); dead_age = 0;
	if :: (i) == 1 -> high_ok = 0 :: else -> skip fi
}

/* One backup's crash and restart. */
#define BACKUP_CRASHES(i) \
	:: d_step { up[i] && b_crashes < B_CRASHES && (CRASHING == 0 || CRASHING == (i)) && (!CRASH_DEAD || !up[0]) -> \
		b_crashes++; backup_reset(i); up[i] = 0; down_t[i] = 0; \
		for (k : 0 .. 2) { c = k * 3 + (i); f_in[c] = 0 }; c = 0; \
		backups_changed(i); \
		normalize() } \
	:: d_step { !up[i] && down_t[i] >= 1 && !f_in[(i) * 3] && !f_in[(i) * 3 + 3 - (i)] -> \
		up[i] = 1; backup_reset(i); \
		for (k : 0 .. 2) { knows[k * 3 + (i)] = 0; knows[(i) * 3 + k] = 0; gap[k * 3 + (i)] = 0; gap[(i) * 3 + k] = 0 }; \
		backups_changed(i); \
		normalize() }

/* channel s*3+r delivered, or lost */
#define DELIVER(s, r, RECEIVE) \
	:: d_step { f_in[(s) * 3 + (r)] -> RECEIVE; normalize() } \
	:: d_step { f_in[(s) * 3 + (r)] && losses < LOSSES && (!LATE_LOSSES || mcut) -> losses++; f_in[(s) * 3 + (r)] = 0; normalize() }

active proctype world()
{
	d_step { pa[1] = FAIL; pa[2] = PA_CAP; pr[1] = FAIL; pr[2] = FAIL; hbt[1] = MH_CAP; hbt[2] = MH_CAP;
		bcut = (BCUT == 2); m_rel_t = SETTLE; normalize() }   /* nobody heard yet */
	do
	/* ======================= crashes and restarts ======================= */
	/* (first: pan's depth-first search then reaches the runs with crashes early) */
	:: d_step { up[0] && m_crashes < M_CRASHES ->
		m_crashes++; master_reset(); up[0] = 0; m_down_t = 0;
		f_in[3] = 0; f_in[6] = 0;
		dead_ante = (up[1] || up[2]); dead_age = 0;
		high_ok = (up[1] && !BUSY(2));
		normalize() }
	:: d_step { M_RESTARTS && !up[0] && m_down_t >= 1 && !f_in[1] && !f_in[2] &&
	            (!MCUT || (up[1] && (d[1] == D_deferring || d[1] == D_contested) && d[2] == D_failed_over)) ->
		up[0] = 1; master_reset(); mcut = MCUT;
		for (k : 1 .. 2) { knows[k * 3] = 0; knows[k] = 0; hbc[k] = 0; gap[k] = 0; gap[k * 3] = 0 };
		dead_ante = 0;
		normalize() }

	BACKUP_CRASHES(1)
	BACKUP_CRASHES(2)

	/* ======================= the master ======================= */
	:: d_step { up[0] && m_hb_t == 0 ->
		SEND_HB(1); SEND_HB(2); m_hb_t = INTERVAL;
		normalize() }
	:: d_step { up[0] && (m_state == M_waiting || m_state == M_probing) && M_ALL_RELEASED ->
		/* every backup said "released" (spec/backups.md, "Failback to the master") */
		m_state = M_acquiring; m_op_t = 0; m_probe = 0;
		normalize() }
	:: d_step { up[0] && m_state == M_waiting && M_MAY_PRESUME ->
		/* a backup not heard for the failure timeout is presumed gone with a probe */
		m_state = M_probing; m_probe = 1; m_probe_t = PROBE_T; m_snap = (addr[1] || addr[2]);
		normalize() }
	:: d_step { up[0] && m_state == M_probing && m_probe_t == 0 ->
		m_probe = 0;
		if
		:: m_snap -> m_state = M_waiting;
			if :: m_sil[1] >= FAIL -> m_sil[1] = 0 :: else -> skip fi;
			if :: m_sil[2] >= FAIL -> m_sil[2] = 0 :: else -> skip fi
		:: else -> m_state = M_acquiring; m_op_t = 0
		fi;
		normalize() }
	:: d_step { up[0] && m_state == M_acquiring && m_op_t >= OP_MIN ->
		addr[0] = 1; m_state = M_holding;
		SEND_HB(1); SEND_HB(2); m_hb_t = INTERVAL;   /* and tells the backups at once */
		normalize() }
	/* ======================= the backups ======================= */
	BACKUP(1)
	BACKUP(2)

	/* ======================= the network ======================= */
	DELIVER(0, 1, receive_heartbeat(1))
	DELIVER(0, 2, receive_heartbeat(2))
	DELIVER(1, 0, receive_status(1))
	DELIVER(2, 0, receive_status(2))
	DELIVER(1, 2, receive_peer(2, 1))
	DELIVER(2, 1, receive_peer(1, 2))
	:: d_step { (BCUT == 1 || BCUT == 3) && !bcut ->
		bcut = 1; f_in[5] = 0; if :: BCUT != 3 -> f_in[7] = 0 :: else -> skip fi;
		normalize() }

	/* ======================= time ======================= */
	:: d_step { !F_DUE && !M_DUE && !B_DUE(1) && !B_DUE(2) ->
		clock++;
		for (k : 0 .. 8) { if :: f_in[k] -> f_age[k] = 1 :: else -> skip fi };
		if
		:: up[0] ->
			if :: m_hb_t > 0 -> m_hb_t-- :: else -> skip fi;
			if :: m_probe -> m_probe_t = 0 :: else -> skip fi;
			if :: m_state == M_acquiring -> m_op_t++ :: else -> skip fi;
			if :: m_state == M_waiting -> INC(m_sil[1], FAIL); INC(m_sil[2], FAIL) :: else -> skip fi;
			if :: m_state == M_waiting || m_state == M_probing -> INC(m_rel_t, SETTLE) :: else -> skip fi
		:: else -> INC(m_down_t, 1)
		fi;
		for (k : 1 .. 2) {
			if
			:: up[k] ->
				INC(sil[k], DLMAX);
				if
				:: PEER_MASTER && hbt[k] == MH_WINDOW - 1 ->
					/* "master heard" clears: told at once, an extra frame (its periodic ones keep their phase) */
					hbt[k]++; send_peer(k)
				:: else -> INC(hbt[k], MH_CAP)
				fi;
				if :: k == 2 -> INC(pa[k], PA_CAP) :: else -> INC(pa[k], FAIL) fi; INC(pr[k], FAIL);
				if :: d[k] == D_announcing -> INC(w_t[k], FAIL); INC(ann_t[k], LIMIT) :: else -> skip fi;
				if :: pt[k] > 0 -> pt[k]-- :: else -> skip fi;
				if :: probe[k] -> probe_t[k] = 0 :: else -> skip fi;
				if :: retry_t[k] > 0 -> retry_t[k]-- :: else -> skip fi;
				if :: d[k] == D_acquiring || d[k] == D_recovering -> op_t[k]++ :: else -> skip fi
			:: else -> INC(down_t[k], 1)
			fi
		};
		/* links up: every channel whose ends are up (and not cut) counts a frame
		 * at least once in every FAIL ticks */
		for (k : 0 .. 8) {
			if
			:: k % 4 != 0 && up[k / 3] && up[k % 3] && !BB_CUT(k / 3, k % 3) && !(mcut && (k == 1 || k == 3)) ->
				gap[k]++; links_broken = (links_broken || gap[k] >= FAIL)
			:: else -> gap[k] = 0
			fi
		};
		if :: dead_ante -> INC(dead_age, AGE_CAP) :: else -> skip fi;
		normalize() }
	if
	:: links_broken -> goto end_links_broken
	:: else -> skip
	fi
	od;
end_links_broken:
	false
}

/* ---- properties (spec/backups.md, "Properties") -----------------------------
 * no_two_holders: never two of the master and the backups with the address configured.
 * takeover_bounded: the master dead (for good: until it returns), some backup
 * up: some backup holds within TAKEOVER_BOUND ticks of the later of the
 * master's death and the last backup crash or restart.
 * higher_bounded: and B1 holds within HIGHER_BOUND, if B1 was up at the
 * master's death and has not crashed since, and B2 was not announcing,
 * taking or holding the address then.
 */
#define TAKEOVER_LATE (dead_ante && dead_age > TAKEOVER_BOUND && !addr[1] && !addr[2])
#define HIGHER_LATE (high_ok && dead_age > HIGHER_BOUND && !addr[1])

ltl no_two_holders { [] (links_broken || !TWO_HOLDERS) }
ltl takeover_bounded { [] (links_broken || !TAKEOVER_LATE) }
ltl higher_bounded { [] (links_broken || !HIGHER_LATE) }
ltl backups_safety { [] (links_broken || (!TWO_HOLDERS && !TAKEOVER_LATE && !HIGHER_LATE)) }
