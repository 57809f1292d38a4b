namespace Hub.Tests;

/// <summary>This process's mappings as Linux lists them in /proc/self/smaps (tests of resident memory and madvise).</summary>
public static class Smaps
{
    /// <summary>
    /// Whether the kernel has transparent huge pages at all (built without them, MADV_HUGEPAGE and MADV_NOHUGEPAGE fail
    /// and no mapping carries "hg"/"nh").
    /// </summary>
    public static bool TransparentHugePages => Directory.Exists("/sys/kernel/mm/transparent_hugepage");

    // A mapping's header is "lo-hi perms offset dev inode [path]"; its fields are "Name:   value".
    private static bool Header(string line, out ulong lo, out ulong hi, out string path)
    {
        lo = hi = 0; path = "";
        var parts = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
        int dash = parts[0].IndexOf('-');
        if (parts.Length < 5 || dash <= 0 || parts[0].EndsWith(':')) return false;
        lo = Convert.ToUInt64(parts[0][..dash], 16);
        hi = Convert.ToUInt64(parts[0][(dash + 1)..], 16);
        path = parts.Length == 6 ? parts[5].Trim() : "";
        return true;
    }

    /// <summary>The VmFlags of the mapping that holds <paramref name="address"/> (e.g. "hg" MADV_HUGEPAGE, "nh" MADV_NOHUGEPAGE).</summary>
    public static string[] VmFlags(long address)
    {
        bool inside = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            if (Header(line, out var lo, out var hi, out _)) { inside = (ulong)address >= lo && (ulong)address < hi; continue; }
            if (inside && line.StartsWith("VmFlags:", StringComparison.Ordinal)) return line[8..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        }
        throw new InvalidOperationException($"no mapping holds 0x{address:x}");
    }

    /// <summary>Resident bytes of the mappings whose file path satisfies <paramref name="path"/>.</summary>
    public static long Rss(Func<string, bool> path)
    {
        long rss = 0;
        bool inside = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            if (Header(line, out _, out _, out var p)) { inside = p.Length > 0 && path(p); continue; }
            if (inside && line.StartsWith("Rss:", StringComparison.Ordinal)) rss += long.Parse(line[4..].Trim().Split(' ')[0]) * 1024;
        }
        return rss;
    }
}
