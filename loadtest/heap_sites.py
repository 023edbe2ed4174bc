"""Sums a heaptrack flame-graph stack file (heaptrack_print -F, one
"frame;frame;... cost" line per stack) by allocation site: the innermost
frame outside the allocator and collection plumbing, with its caller.
Prints the sites by bytes per socket.

    python3 loadtest/heap_sites.py STACKS SOCKETS [TOP]
"""
import collections
import re
import sys

# Frames that only pass an allocation on (allocator, Vec/Box/BytesMut
# growth); the site is the first frame outside them.
PLUMBING = re.compile(
    r"^(alloc|alloc_impl|alloc_impl_runtime|allocate|alloc_zeroed|finish_grow|grow_amortized|"
    r"grow_one|reserve|reserve_inner|try_reserve|do_reserve_and_handle|with_capacity|"
    r"with_capacity_in|try_allocate_in|try_new_uninit_in|new_uninit_in|box_new_uninit|"
    r"fallible_with_capacity|new_uninitialized|reserve_rehash|reserve_rehash_inner|"
    r"resize_inner|prepare_resize|do_alloc|exchange_malloc|malloc|realloc|calloc|"
    r"__rustc::.*|__rdl_.*|std::sys::alloc::.*|<std::alloc::System.*|"
    r"new|new_in|new_leaf|from|to_vec|to_vec_in|clone|extend|extend_from_slice|push|insert|"
    r"insert_entry|box_new|default)$")
PLUMBING_FILES = {"alloc.rs", "raw_vec/mod.rs", "raw_vec.rs", "boxed.rs", "bytes_mut.rs",
                  "vec.rs", "spec_from_elem.rs", "spec_extend.rs", "slice.rs", "string.rs",
                  "node.rs", "unix.rs", ""}


def frame_parts(frame):
    match = re.match(r"^(.*?)(?: \(([^)]*)\))?$", frame)
    name, file = match.group(1), match.group(2) or ""
    return re.sub(r"<.*", "", name).strip(), file


def main():
    path, sockets = sys.argv[1], int(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
    sites = collections.Counter()
    total = 0
    for line in open(path, encoding="utf-8", errors="replace"):
        stack, _, cost = line.rstrip("\n").rpartition(" ")
        if not cost.isdigit():
            continue
        total += int(cost)
        frames = [frame_parts(f) for f in stack.split(";") if f]
        i = len(frames) - 1
        while i > 0 and (PLUMBING.match(frames[i][0]) or frames[i][1] in PLUMBING_FILES):
            i -= 1
        name, file = frames[i]
        caller = "%s (%s)" % frames[i - 1] if i > 0 else ""
        sites["%s (%s)  <-  %s" % (name, file, caller)] += int(cost)
    print("total %.0f KiB, %.0f B per socket" % (total / 1024, total / max(sockets, 1)))
    for site, cost in sites.most_common(top):
        print("%8.0f B/socket  %s" % (cost / max(sockets, 1), site[:170]))


if __name__ == "__main__":
    main()
