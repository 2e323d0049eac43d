"""PURE: bytes to records to packets.

    reader   capture files (pcap either byte order, micro/nanosecond; pcapng, any sections and
             interfaces; either gzip'd) streamed as Records, damage reported by byte offset
    pcapng   the pcapng block format: constants, options, and every block harness writes
    decode   a Record's link, IP and TCP/UDP headers to a Packet; every Packet it holds (unwrap:
             tunnels opened, fragments reassembled, checksums verified when asked); what else it is
    tunnel   what an IP or UDP packet carries inside it, found as Zeek finds it
    fragments  IP fragments reassembled into datagrams as Zeek reassembles them, memory bounded
    checksum   the Internet checksum of IPv4 headers and of TCP/UDP over IPv4 and IPv6
    packet   the Packet the analysis works on, TCP's flags and its sequence arithmetic

Nothing here runs a program, opens a socket or waits: files in, values out.
"""
