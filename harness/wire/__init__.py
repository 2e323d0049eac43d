"""PURE: bytes to records to packets.

    reader   capture files (pcap either byte order, micro/nanosecond; pcapng, any sections and
             interfaces; either gzip'd) streamed as Records, damage reported by byte offset
    pcapng   the pcapng block format: constants, options, and every block harness writes
    decode   a Record's link, IP and TCP/UDP headers to a Packet; what else a frame is
    packet   the Packet the analysis works on, TCP's flags and its sequence arithmetic

Nothing here runs a program, opens a socket or waits: files in, values out.
"""
