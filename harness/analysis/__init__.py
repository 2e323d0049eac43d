"""PURE: packets to conversations to facts and verdicts.

    pipeline      a capture file through the reader, the decoder and the tracker (analyse,
                  stream_summaries), with the C scanner for summaries when it is compiled
    tracker       which conversation a packet belongs to, and when a conversation ends (Zeek's timers)
    conversation  a conversation, its segments and relative sequence numbers
    zeek          Zeek's endpoint states, conn_state, history and byte counts
    tshark        tshark's retransmission, out-of-order and duplicate-ACK counters
    summary       conn.log-style records (Zeek's field names)
    expect        expectations: the language, the matcher, the named checks, the built-in ones
    _speedups.c   the summary path's per-packet work in C, held to the Python above by the tests
"""
