using System.Diagnostics;
using System.Globalization;

namespace Hub.Cli.Commands;

/// <summary>
/// Resident-set figures of this process for <c>hub bench</c>, which may export a model and run llama.cpp in the same
/// process as the engine it measures. On Linux the kernel's high-water mark (<c>VmHWM</c> in /proc/self/status) can be
/// reset by writing "5" to /proc/self/clear_refs (Linux ≥ 4.0), so a phase's peak leaves out whatever ran before it;
/// elsewhere only the process-lifetime peak exists (<see cref="Process.PeakWorkingSet64"/>).
/// </summary>
public static class PeakRss
{
    /// <summary>Where Linux reports the process's memory counters.</summary>
    public const string StatusPath = "/proc/self/status";

    /// <summary>Writing "5" here resets the process's resident-set high-water mark (proc(5), /proc/pid/clear_refs).</summary>
    public const string ClearRefsPath = "/proc/self/clear_refs";

    /// <summary>
    /// The value of a <c>Field:   N kB</c> line of /proc/PID/status text in bytes, or null when the field is absent or
    /// not in kB (the kernel reports every Vm* counter in kB).
    /// </summary>
    public static long? ParseStatusBytes(string status, string field)
    {
        ArgumentNullException.ThrowIfNull(status);
        ArgumentException.ThrowIfNullOrEmpty(field);
        foreach (var line in status.AsSpan().EnumerateLines())
        {
            if (line.Length <= field.Length || line[field.Length] != ':' || !line.StartsWith(field, StringComparison.Ordinal)) continue;
            var rest = line[(field.Length + 1)..].Trim();
            int space = rest.IndexOf(' ');
            if (space < 0 || !rest[(space + 1)..].Trim().SequenceEqual("kB")) return null;
            return long.TryParse(rest[..space], NumberStyles.None, CultureInfo.InvariantCulture, out var kb) && kb <= long.MaxValue / 1024
                ? kb * 1024 : null;
        }
        return null;
    }

    /// <summary>
    /// Resets the high-water mark to the current resident set; false when this OS or kernel cannot (then
    /// <see cref="PeakBytes"/> stays the process-lifetime peak).
    /// </summary>
    public static bool TryReset()
    {
        if (!OperatingSystem.IsLinux() || StatusField("VmHWM") is null) return false;
        try
        {
            using var f = new FileStream(ClearRefsPath, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, bufferSize: 0);
            f.Write("5"u8);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>Bytes resident now (VmRSS on Linux, the working set elsewhere).</summary>
    public static long CurrentBytes() => StatusField("VmRSS") ?? Process.GetCurrentProcess().WorkingSet64;

    /// <summary>Peak resident bytes since the last <see cref="TryReset"/> (Linux) or since the process started.</summary>
    public static long PeakBytes() => StatusField("VmHWM") ?? Process.GetCurrentProcess().PeakWorkingSet64;

    /// <summary>
    /// What the resident set is made of now, from /proc/self/status: anonymous pages (the GC heap, native buffers, the
    /// KV cache, JIT'd code's writable views), file-backed pages (mapped weights and loaded libraries) and shared memory;
    /// null where the OS does not report them.
    /// </summary>
    public static RssComposition? Composition()
    {
        if (!OperatingSystem.IsLinux()) return null;
        string status;
        try { status = File.ReadAllText(StatusPath); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
        return ParseComposition(status);
    }

    /// <summary>The RssAnon/RssFile/RssShmem lines of /proc/PID/status text; null when any is missing.</summary>
    public static RssComposition? ParseComposition(string status) =>
        ParseStatusBytes(status, "RssAnon") is { } anon && ParseStatusBytes(status, "RssFile") is { } file && ParseStatusBytes(status, "RssShmem") is { } shmem
            ? new RssComposition(anon, file, shmem) : null;

    /// <summary>
    /// Returns the C heap's free pages to the OS (glibc <c>malloc_trim(0)</c>), so buffers an export freed do not stay
    /// resident in the next phase's baseline; a no-op where glibc is absent.
    /// </summary>
    public static void TrimNativeHeap()
    {
        if (!OperatingSystem.IsLinux()) return;
        try { _ = MallocTrim(0); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { } // musl and others: nothing to trim
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);

    /// <summary>Where Linux lists each mapping of the process with its resident and huge-page counters.</summary>
    public const string SmapsPath = "/proc/self/smaps";

    /// <summary>
    /// Resident bytes of this process's mappings of the files <paramref name="paths"/> (and of every file under those
    /// that are folders) and how many of them the kernel maps as 2 MiB pages (smaps FilePmdMapped): whether an engine's
    /// weights stream through 2 MiB or 4 KiB TLB entries. Null off Linux or when smaps cannot be read.
    /// </summary>
    public static MappedPages? MappedPagesOf(params string[] paths)
    {
        if (!OperatingSystem.IsLinux()) return null;
        try { return ParseMappedPages(File.ReadAllText(SmapsPath), paths.Select(RealPath).ToArray()); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    // smaps names a mapping by its resolved path: a cache folder reached through a symbolic link must be resolved too.
    private static unsafe string RealPath(string path)
    {
        var full = Path.GetFullPath(path);
        nint p = Realpath(full, 0);
        if (p == 0) return full;   // absent (a cache folder not written yet) or unreadable: compare as given
        try { return System.Runtime.InteropServices.Marshal.PtrToStringUTF8(p) ?? full; }
        finally { System.Runtime.InteropServices.NativeMemory.Free((void*)p); }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "realpath")]
    private static extern nint Realpath([System.Runtime.InteropServices.MarshalAs(System.Runtime.InteropServices.UnmanagedType.LPUTF8Str)] string path, nint resolved);

    /// <summary>The Rss and FilePmdMapped totals of the mappings in /proc/PID/smaps text whose file is one of <paramref name="paths"/> or lies under one.</summary>
    public static MappedPages ParseMappedPages(string smaps, params string[] paths)
    {
        ArgumentNullException.ThrowIfNull(smaps);
        ArgumentNullException.ThrowIfNull(paths);
        var dirs = paths.Select(p => p.TrimEnd('/') + "/").ToArray();
        long rss = 0, pmd = 0;
        bool match = false;
        foreach (var line in smaps.AsSpan().EnumerateLines())
        {
            // a mapping's header is "lo-hi perms offset dev inode [path]"; its fields are "Name:   N kB"
            int space = line.IndexOf(' ');
            if (space > 0 && line[space - 1] != ':')
            {
                // the path starts after the inode, past a run of spaces
                var rest = line;
                for (int field = 0; field < 5 && rest.Length > 0; field++)
                {
                    int sp = rest.IndexOf(' ');
                    rest = sp < 0 ? default : rest[(sp + 1)..].TrimStart(' ');
                }
                match = false;
                if (rest.EndsWith(" (deleted)", StringComparison.Ordinal)) rest = rest[..^" (deleted)".Length];   // unlinked or replaced since mapped
                for (int i = 0; i < paths.Length && !match && rest.Length > 0; i++)
                    match = rest.SequenceEqual(paths[i]) || rest.StartsWith(dirs[i], StringComparison.Ordinal);
                continue;
            }
            if (!match) continue;
            if (line.StartsWith("Rss:", StringComparison.Ordinal)) rss += FieldKb(line) * 1024;
            else if (line.StartsWith("FilePmdMapped:", StringComparison.Ordinal)) pmd += FieldKb(line) * 1024;
        }
        return new MappedPages(rss, pmd);

        static long FieldKb(ReadOnlySpan<char> line)
        {
            var v = line[(line.IndexOf(':') + 1)..].Trim();
            int sp = v.IndexOf(' ');
            return long.TryParse(sp < 0 ? v : v[..sp], NumberStyles.None, CultureInfo.InvariantCulture, out var kb) ? kb : 0;
        }
    }

    private static long? StatusField(string field)
    {
        if (!OperatingSystem.IsLinux()) return null;
        try { return ParseStatusBytes(File.ReadAllText(StatusPath), field); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }
}

/// <summary>Resident bytes of an engine's weight-file mappings and the part of them mapped as 2 MiB pages.</summary>
/// <param name="ResidentBytes">Bytes of the mappings in memory (smaps Rss).</param>
/// <param name="HugeBytes">Bytes of them mapped by 2 MiB page-table entries (smaps FilePmdMapped).</param>
public sealed record MappedPages(long ResidentBytes, long HugeBytes)
{
    /// <summary>The 2 MiB share of the resident bytes (0 when nothing is resident).</summary>
    public double HugeFraction => ResidentBytes > 0 ? (double)HugeBytes / ResidentBytes : 0;
}

/// <summary>Resident bytes by kind (Linux /proc/PID/status): what a phase's growth went to.</summary>
/// <param name="AnonBytes">Anonymous pages: GC heap, native tensors and KV cache, runtime data.</param>
/// <param name="FileBytes">File-backed pages: memory-mapped weights and loaded code.</param>
/// <param name="ShmemBytes">Shared memory (the runtime's double-mapped JIT code).</param>
public sealed record RssComposition(long AnonBytes, long FileBytes, long ShmemBytes);

/// <summary>
/// The resident-set peak of one phase of <c>hub bench</c> (load + prefill + decode of one engine): begun after any
/// export, with the garbage collector's free memory given back and the high-water mark reset where the OS allows it.
/// </summary>
public sealed class RssPhase
{
    private RssPhase(bool isolated, long baseline, RssComposition? composition)
    {
        Isolated = isolated; BaselineBytes = baseline; BaselineComposition = composition;
    }

    /// <summary>What <see cref="BaselineBytes"/> was made of (null where the OS does not say).</summary>
    public RssComposition? BaselineComposition { get; }

    /// <summary>
    /// Adds how each kind of resident memory grew since the phase began to <paramref name="engine"/>
    /// (<c>rss_growth_anon_mib</c>, <c>rss_growth_file_mib</c>, <c>rss_growth_shmem_mib</c>); nothing where the OS does
    /// not report the kinds. Call it at the phase's peak (after the warm-up round, before anything is freed).
    /// </summary>
    public void AddGrowthByKind(System.Text.Json.Nodes.JsonObject engine, RssComposition? now)
    {
        ArgumentNullException.ThrowIfNull(engine);
        if (BaselineComposition is not { } b || now is null) return;
        engine["rss_growth_anon_mib"] = Mib(now.AnonBytes - b.AnonBytes);
        engine["rss_growth_file_mib"] = Mib(now.FileBytes - b.FileBytes);
        engine["rss_growth_shmem_mib"] = Mib(now.ShmemBytes - b.ShmemBytes);
    }

    /// <summary>True when the peak is this phase's own (Linux); false when it is the process-lifetime peak.</summary>
    public bool Isolated { get; }

    /// <summary>Resident bytes when the phase began (the .NET runtime and whatever earlier phases left loaded).</summary>
    public long BaselineBytes { get; }

    /// <summary>
    /// Begins a phase: a blocking, compacting, aggressive collection returns an export's freed buffers to the OS, then
    /// the high-water mark is reset and the resident set recorded.
    /// </summary>
    public static RssPhase Begin()
    {
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        PeakRss.TrimNativeHeap();
        bool isolated = PeakRss.TryReset();
        return new RssPhase(isolated, PeakRss.CurrentBytes(), PeakRss.Composition());
    }

    /// <summary>Peak resident bytes of the phase so far (of the whole process so far when not <see cref="Isolated"/>).</summary>
    public long PeakBytes() => PeakRss.PeakBytes();

    /// <summary>How far the phase raised the resident set above its baseline (0 when not <see cref="Isolated"/>: unknown).</summary>
    public long GrowthBytes() => Isolated ? Math.Max(0, PeakBytes() - BaselineBytes) : 0;

    /// <summary>What the phase's peak covers, for the bench output.</summary>
    public string Scope => Isolated
        ? "this phase only: VmHWM reset through /proc/self/clear_refs after any export"
        : "process lifetime (this OS/kernel cannot reset the peak): includes an export made by this run";

    /// <summary>MiB with one decimal, as the bench prints memory.</summary>
    public static double Mib(long bytes) => Math.Round(bytes / 1048576.0, 1);
}

/// <summary>How <c>hub bench</c> gets its model: exported (timed, outside the measured phase) and then loaded.</summary>
internal static class BenchLoad
{
    /// <summary>
    /// The IR folder of <paramref name="idOrPath"/>: itself when it already is one, else the cached export, made now
    /// (timed in <c>ExportSeconds</c>) when absent.
    /// </summary>
    public static (string IrDir, double? ExportSeconds) EnsureExported(string idOrPath, ModelOptions options)
    {
        var local = ModelLocator.Resolve(idOrPath, options);
        if (Directory.Exists(local) && Hub.IR.IrModel.Exists(local)) return (local, null);
        if (Exporter.TryGetCached(local, options, out var cached)) return (cached, null);
        var sw = Stopwatch.StartNew();
        var dir = Exporter.GetOrCreateCached(local, options);
        return (dir, sw.Elapsed.TotalSeconds);
    }

    /// <summary>Loads the IR folder <paramref name="irDir"/> with the runtime settings of <paramref name="options"/>.</summary>
    public static CausalLM Load(string irDir, ModelOptions options) =>
        CausalLM.FromPretrained(irDir, export: false, new ModelOptions
        {
            Threads = options.Threads, MaxContext = options.MaxContext, MaxBatch = options.MaxBatch, KvCachePrecision = options.KvCachePrecision, Progress = options.Progress,
        });
}
