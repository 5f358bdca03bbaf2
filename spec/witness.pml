/*
 * witness.pml -- hosts claiming one address through a witness store (etcd), in
 * discrete real time, with local clocks that drift in rate.
 *
 * The design, the assumptions and the arithmetic: spec/witness.md. The checks:
 * tests/test_spec_witness.py.
 *
 * The store is a linearizable object: each request takes effect atomically at
 * one instant between the moment its host sends it and the moment the host
 * reads the answer, or never. The network between a host and the store may
 * delay any request or answer without bound or lose it, independently per
 * request, so every partition of hosts from etcd members is a run of the model
 * (a cut is every message lost from then on). A partition among the etcd
 * members only decides which requests take effect: the side with a majority
 * serves linearizably (Raft's guarantee, taken as given); the minority answers
 * nothing that we rely on (we never use serializable reads).
 *
 * A request that a host gave up on (its answer never came in time) may still
 * take effect later: the "ghost" slot holds it. Each claim attempt writes a new
 * token, so a ghost's claim or a claim left by a crashed life belongs to
 * nobody alive: ORPHAN.
 *
 * Local time: a host measures an interval D on its own clock, and its clock
 * runs at a rate within 1 +- rho of real time, so D lasts between LO(D) and
 * HI(D) real ticks, and the store's lease clock likewise. Nothing is assumed
 * about the offset between clocks. Each interval takes the end of its range
 * that is worse for "never two holders", independently of every other: a
 * proof's validity lasts HI(V) (the holder's clock slow), the wait after a
 * grant LO(W) (the claimant's clock fast), the lease LO(TTL) (the leader's
 * clock fast; the store may expire it any time later). Every other choice is
 * dominated: a host whose proof runs out sooner, or whose wait ends later,
 * holds the address during a subset of the same run (nothing else a host or
 * the store does depends on those two timers), and a later expiry is one of
 * the runs the store's free choice already has. (Drawing every length in its
 * range makes the same model nine times larger for nothing: spec/witness.md.)
 *
 * Time only passes when nothing is due: an address whose proof has run out is
 * removed before the next tick (spec/witness.md: the holder finishes its
 * release before its deadline; the model makes the release instant and puts
 * the deadline at the end of the proof).
 */

/* ---- configuration (override with spin -D...) ---------------------------- */

#ifndef N
#define N 2                 /* hosts (2 or 3; 3 is too large to search here: OTHERS stands for them) */
#endif
#ifndef RULE
#define RULE 0              /* 0: the design. Weaker rules, each must be caught:
                               1: no drift margin (the wait after a grant equals the proof's validity)
                               2: a proof counted from the answer's arrival, not from the request's sending
                               3: no wait after a grant (configure as soon as the claim succeeds)
                               4: trust the store's lease (vip-manager's way): claim only a key whose
                                  lease expired, configure at once, hold while the lease's TTL counted
                                  from the renewal's answer has not run out                          */
#endif
#ifndef EXPIRY_ANY
#define EXPIRY_ANY 1        /* 1: the store may drop a claim at any moment (an early lease revocation) */
#endif
#ifndef OTHERS
#define OTHERS 1            /* 1: hosts beyond the N modelled claim at any moment (below) */
#endif
#ifndef CRASHES
#define CRASHES 0           /* crashes per host per run */
#endif
#ifndef KEEP
#define KEEP 0              /* 1: --etcd-unreachable keep (keep-and-refuse-new): a holder keeps its address
                               past its proof while the other host confirms, in answer to a heartbeat, that
                               it cannot reach the store either; each confirmation a proof counted from the
                               heartbeat's sending. Every other host must confirm: with OTHERS=0 the
                               two hosts are all there are; with OTHERS=1 they are any two of N, each
                               keeping on the other's confirmation (it needs everyone's, the other's
                               among them: a subset of the same run) while the rest change the key's
                               owner at any moment (spec/witness.md, "With several backups"). */
#endif
#ifndef CONFIRM
#define CONFIRM 0           /* 1, KEEP's weaker rule, must be caught: an owner (a host that read its
                               grant) confirms too, or, the same, a confirmation counts from its
                               arrival instead of from the heartbeat it answers */
#endif
#ifndef KEPT
#define KEPT 0              /* 1: assert that no confirmation ever keeps a holder longer, to show one does */
#endif

#define RHO   3             /* rate drift: D local lasts D -+ ceil(D / RHO) real ticks (rho = 1/3) */
#define LO(D) ((D) - ((D) + RHO - 1) / RHO)
#define HI(D) ((D) + ((D) + RHO - 1) / RHO)
#define V     2             /* a proof's validity, local ticks from sending the request */
#define TTL   3             /* the claim's lease, store ticks (the leader's clock drifts too) */
#ifndef W
#if RULE == 1
#define W     V             /* no margin */
#elif RULE >= 3
#define W     0
#else
#define W     6             /* the smallest W with LO(W) > HI(V): 6 - 2 = 4 > 3 (spec/witness.md) */
#endif
#endif

/* ---- the store ------------------------------------------------------------- */

#define NOBODY 0            /* owner: no key */
#define ORPHAN 9            /* owner: a token no living attempt holds */
byte owner = NOBODY;        /* 1..N: host owner-1's current attempt */
byte lease_left;            /* real ticks until the store may expire the claim's lease */

/* ---- the hosts ------------------------------------------------------------- */

#define IDLE   0            /* no claim */
#define CLAIM  1            /* an attempt: the claim transaction is on its way */
#define OWNER  2            /* granted: waiting, renewing, holding the address */

#define R_NONE   0
#define R_CLAIM  1          /* txn: create_revision == 0 -> put(token, lease), or the takeover
                               txn: mod_revision == observed -> put(token, lease). The model lets a
                               takeover of an existing claim succeed or fail at will, whatever the
                               revisions: the revision check only spares a live holder (liveness);
                               safety must not rest on it, and so the model leaves it out. */
#define R_RENEW  2          /* txn: value == token -> put(token, lease) */

#define SENT     1          /* on its way or waiting in the store */
#define GRANTED  2          /* taken effect, succeeded; the answer is on its way */
#define REFUSED  3          /* taken effect, its comparison failed; the answer is on its way */

byte phase[N];
bit  addr[N];               /* the address is configured on this host */
#ifndef REACH
#define REACH 0             /* 1: record who held, for no_handover (more states) */
#endif
#if REACH
bit  held[N];               /* this host has held the address in this run */
#define HELD(i) held[i] = 1
#else
#define HELD(i) skip
#endif
byte wait_left[N];          /* an owner: real ticks until the wait after its grant is over */
byte valid_left[N];         /* real ticks until the newest proof runs out (0: no proof) */
byte rq[N];                 /* the request in flight */
byte rq_st[N];
byte cand[N];               /* real ticks of validity a successful answer to rq gives, counted from its sending */
byte gh[N];                 /* a request given up on that may still take effect */
byte crashed[N];
#if KEEP
/* A confirmation: host j, in answer to a heartbeat host i sent at h, says it cannot reach the
 * store; host i, holding, may then keep its address until h + V on its clock (HI(V) real ticks).
 * Instead of heartbeats and confirmations on their way, the model takes the largest validity any
 * schedule of them could bring now, which dominates every other: a confirmation sent while j has
 * not read a grant (phase != OWNER) answers a heartbeat sent before it, so one arriving now is
 * worth at most HI(V) - owner_age[j] ticks, owner_age[j] being the real ticks since j read its
 * grant (0 while it has not). Loss and delay only make it worth less. */
byte owner_age[N];          /* real ticks since host i became OWNER, saturating at HI(V); 0 otherwise */
#if CONFIRM
#define CONF_VALUE(j) HI(V)                 /* an owner confirms too, or a confirmation counted from
                                               its arrival (it may arrive any time late): no bound */
#else
#define CONF_VALUE(j) (HI(V) - owner_age[j])
#endif
#if KEPT
#define KEPT_CHECK(i) printf("KEPT %d\n", i); assert(0)   /* a confirmation keeps a holder longer */
#else
#define KEPT_CHECK(i) skip
#endif
#endif

/* "Never two holders" is checked where the number of holders grows, when an address is
 * configured; REACH=1 asserts instead that no handover happens, to show that one does. */
#if REACH
#define CHECK if :: HANDOVER -> printf("HANDOVER\n") :: else -> skip fi; assert(!(HANDOVER))
#else
#define CHECK printf("HOLDERS %d\n", HOLDERS); assert(HOLDERS <= 1)
#endif

#if N == 2
#define HOLDERS (addr[0] + addr[1])
#define HANDOVER (held[0] && addr[1])
#else
#define HOLDERS (addr[0] + addr[1] + addr[2])
#define HANDOVER (held[0] && held[1] && addr[2])
#endif



inline send(i, kind) {
    rq[i] = kind;
    rq_st[i] = SENT;
#if RULE != 2 && RULE != 4
    cand[i] = HI(V);        /* counted from now, the sending */
#endif
}

inline grant_lease() {
#if EXPIRY_ANY
    skip                    /* the store expires claims at will: no clock to keep */
#else
    lease_left = LO(TTL)
#endif
}

/* The store: request rq of host i takes effect. */
inline apply(i) {
    if
    :: rq[i] == R_CLAIM ->
        if
        :: owner == NOBODY -> owner = i + 1; grant_lease(); rq_st[i] = GRANTED
#if RULE != 4
        :: owner != NOBODY -> owner = i + 1; grant_lease(); rq_st[i] = GRANTED
#endif
        :: else -> rq_st[i] = REFUSED
        fi
    :: rq[i] == R_RENEW ->
        if
        :: owner == i + 1 -> grant_lease(); rq_st[i] = GRANTED
        :: else -> rq_st[i] = REFUSED
        fi
    fi
}

/* A request host i gave up on takes effect late: nobody reads its answer. */
inline apply_ghost(i) {
    if
    :: gh[i] == R_CLAIM && owner == NOBODY -> owner = ORPHAN; grant_lease()
#if RULE != 4
    :: gh[i] == R_CLAIM && owner != NOBODY -> owner = ORPHAN; grant_lease()
#endif
    :: gh[i] == R_RENEW && owner == i + 1 -> grant_lease()
    :: else -> skip
    fi;
    gh[i] = R_NONE
}

/* A proof: the answer to a request that showed host i owns the claim. */
inline prove(i) {
#if RULE == 2
    cand[i] = HI(V);        /* counted from the answer's arrival: too late */
#elif RULE == 4
    cand[i] = HI(TTL);      /* the lease's TTL, counted from the answer's arrival */
#endif
    if
    :: cand[i] > valid_left[i] -> valid_left[i] = cand[i]
    :: else -> skip
    fi
}

/* Host i reads the answer to its request. */
inline answer(i) {
    if
    :: rq[i] == R_CLAIM ->
        if
        :: rq_st[i] == GRANTED ->
            phase[i] = OWNER;
            wait_left[i] = LO(W);
            prove(i)
        :: else -> phase[i] = IDLE
        fi
    :: rq[i] == R_RENEW ->
        if
        :: rq_st[i] == GRANTED -> prove(i)
        :: else ->    /* the claim is someone else's: drop at once */
            addr[i] = 0; valid_left[i] = 0; phase[i] = IDLE
        fi
    fi;
    done(i)
}

/* A renewal given up on matters later only through the lease it resets. */
#if EXPIRY_ANY
#define GHOSTLY(kind) ((kind) == R_CLAIM)
#else
#define GHOSTLY(kind) 1
#endif

/* The request is over: forget its fields (fewer states, nothing reads them). */
inline done(i) {
    rq[i] = R_NONE; rq_st[i] = 0; cand[i] = 0
}

/* Host i gives up on its request (no answer in time): it may still take effect. */
inline give_up(i) {
    if
    :: rq_st[i] == SENT && gh[i] == R_NONE && GHOSTLY(rq[i]) -> gh[i] = rq[i]
    :: else -> skip       /* lost, or taken effect already */
    fi;
    done(i);
    if
    :: phase[i] == CLAIM -> phase[i] = IDLE
    :: else -> skip
    fi
}

/* A new attempt or a new life: a claim of host i's old token is nobody's now. */
inline new_token(i) {
    if
    :: owner == i + 1 -> owner = ORPHAN
    :: else -> skip
    fi;
    if
    :: gh[i] == R_RENEW -> gh[i] = R_NONE   /* renewed an old token: it can no longer match */
    :: else -> skip
    fi
}

inline crash(i) {
    crashed[i]++;
    addr[i] = 0; valid_left[i] = 0; wait_left[i] = 0;
    give_up(i);
    phase[i] = IDLE;
    new_token(i)
}

inline countdown(v) {
    if
    :: v > 0 -> v--
    :: else -> skip
    fi
}

/* Something due before time may pass. */
/* Configuring is due too: a host that configures later holds during less of the run, so
 * doing it at the first moment allowed covers every later choice. */
#define MAY_CONFIGURE(i) (phase[i] == OWNER && wait_left[i] == 0 && valid_left[i] > 0 && !addr[i])
#define DUE(i) ((addr[i] && valid_left[i] == 0) || MAY_CONFIGURE(i))

/* The events of host i: options of the world's loop (a macro: an inline cannot hold options). */
#define HOST(i) \
    /* start an attempt (heartbeats tell a host when; safety must not depend on it) */ \
    :: atomic { phase[i] == IDLE && rq[i] == R_NONE -> new_token(i); phase[i] = CLAIM; send(i, R_CLAIM) } \
    /* the store takes the request */ \
    :: atomic { rq_st[i] == SENT -> apply(i) } \
    /* the answer arrives */ \
    :: atomic { rq_st[i] >= GRANTED -> answer(i) } \
    /* no answer in time: give up (the request may still take effect) */ \
    :: atomic { rq_st[i] != 0 -> give_up(i) } \
    /* the given-up request takes effect, or is lost */ \
    :: atomic { gh[i] != R_NONE -> apply_ghost(i) } \
    :: atomic { gh[i] != R_NONE -> gh[i] = R_NONE } \
    /* an owner renews */ \
    :: atomic { phase[i] == OWNER && rq[i] == R_NONE -> send(i, R_RENEW) } \
    /* configure the address: granted, waited, and a proof that has not run out */ \
    :: atomic { MAY_CONFIGURE(i) -> addr[i] = 1; HELD(i); CHECK } \
    /* the proof ran out (KEEP: and every confirmation): the address goes (the host stays owner and keeps renewing) */ \
    :: atomic { addr[i] && valid_left[i] == 0 -> addr[i] = 0 } \
    /* the host crashes and restarts in a new life (its address is gone at once) */ \
    :: atomic { crashed[i] < CRASHES -> crash(i) }

inline tick_host(i) {
    countdown(wait_left[i]);
    countdown(valid_left[i]);
    countdown(cand[i]);
#if KEEP
#if KEEP
    if
    :: phase[i] == OWNER && owner_age[i] < HI(V) -> owner_age[i]++
    :: phase[i] != OWNER -> owner_age[i] = 0
    :: else -> skip
    fi;
#endif
#endif
}

#if KEEP
/* A confirmation from host j reaches host i, which holds (a macro, as HOST). */
#define CONFIRMED(i, j) \
    :: atomic { addr[i] && CONF_VALUE(j) > valid_left[i] -> KEPT_CHECK(i); valid_left[i] = CONF_VALUE(j) }
#endif

active proctype world() {
    do
    HOST(0)
    HOST(1)
#if KEEP
    CONFIRMED(0, 1)
    CONFIRMED(1, 0)
#endif
#if N == 3
    HOST(2)
#endif
#if OTHERS
    /* Another host's claim, at any moment. Two holders among any number of hosts are two
     * holders among two of them, and all the others can do to those two is change the
     * key's owner; this is every such change (their own holding is a third host's, the
     * same as these two by symmetry). */
    :: atomic { owner != ORPHAN -> owner = ORPHAN; grant_lease() }
#endif
    /* the store expires the claim's lease: by its own clock, or (EXPIRY_ANY) at any moment */
#if EXPIRY_ANY
    :: atomic { owner != NOBODY -> owner = NOBODY; lease_left = 0 }
#else
    :: atomic { owner != NOBODY && lease_left == 0 -> owner = NOBODY }
#endif
    /* one tick of real time */
#if N == 2
    :: atomic { !DUE(0) && !DUE(1) ->
        tick_host(0); tick_host(1);
#else
    :: atomic { !DUE(0) && !DUE(1) && !DUE(2) ->
        tick_host(0); tick_host(1); tick_host(2);
#endif
        countdown(lease_left);
        }
    od
}
