"""Host-side adapters that carry out the core's actions on a real Linux host.

- :mod:`failoverd.system.netlink`  adds, removes and lists addresses (rtnetlink).
- :mod:`failoverd.system.arp`      RFC 5227 ARP probes and gratuitous ARP (AF_PACKET).
- :mod:`failoverd.system.hooks`    the administrator's Test/PreAcq/PostAcq/PreRel/PostRel hooks.
- :mod:`failoverd.system.takeover` the one acquire/release procedure built from the three.
- :mod:`failoverd.system.mail`     notifications by e-mail (NotifyFailover and the daemons).
- :mod:`failoverd.system.trusted`  paths only root can change (hooks, key file, pid and epoch files).
- :mod:`failoverd.system.processtree` a hook's whole process tree, found, killed and waited for.

Every blocking call runs in a worker thread or a child process, so the Trio
loop that drives the core never stalls on the host.
"""
