// A persistent worker pool for the per-token path: no delegates, no Parallel.For, no allocation per dispatch.
// Workers spin for a few microseconds after a job (ops follow each other closely during decode) and then block on a
// semaphore, so a core shared with a busy neighbour costs a proportional slowdown instead of a spin-wait collapse.
//
// A decode step of a small model dispatches ~60 jobs of ~30 items each, so the pool's own cost per job is a visible
// share of a token: runs of items are claimed with one atomic add (no compare-exchange retry loop), each participant reports
// the items it ran with one atomic add when it runs out of items (not one per item), the caller waits for the last
// item with a tight pause loop (no exponential back-off that overshoots the moment it finishes), and the claim word,
// the completion counter and the sleeper count sit on cache lines of their own so waiting on one does not steal
// the others from the thread writing them.
//
// Streaming jobs (the decode GEMVs and decode attention, session 14) run homed instead (RunHomed): each participant
// owns a contiguous share of the indices and runs it front to back, then takes what is left of the others' shares from
// their ends. Guided claims hand consecutive units to alternating threads, so the 8 KiB each GEMV prefetches past a
// unit's end went to the core that did not run the next unit and every claim restarted a cold stream: a fixed cost
// of ~15 µs per op that sank a small model's Q8_0 decode (paired in-process A/B 1.17–1.24× when removed).
using System.Runtime.CompilerServices;
using System.Diagnostics;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace Hub.Runtime.Threading;

/// <summary>A unit of parallel work: <see cref="Execute"/> runs once per index in [0, count).</summary>
internal abstract class ParallelWork
{
    /// <summary>Runs work item <paramref name="index"/> on worker <paramref name="worker"/> (0 = the calling thread).</summary>
    public abstract void Execute(int index, int worker);
}

/// <summary>Fixed set of threads that execute <see cref="ParallelWork"/> items claimed through one atomic ticket.</summary>
internal sealed class WorkerPool : IDisposable
{
    // The claim word packs generation (20 bits) | count (20 bits) | next index (24 bits). A claim is one atomic add;
    // the value it returns says which job (generation, count) the indices belong to, so a worker that wakes late can
    // only ever run indices of the job that is current at that instant (the job cannot finish, nor its work be
    // replaced, before they are done). A claim that finds the job exhausted overshoots the count by at most
    // count / (4 × participants) + 1, once per participant and job, which the 4 spare index bits absorb.
    private const int IndexBits = 24, CountBits = 20, GenShift = IndexBits + CountBits;
    private const long IndexMask = (1L << IndexBits) - 1, CountMask = (1L << CountBits) - 1;
    /// <summary>Largest number of items one dispatch may have.</summary>
    public const int MaxItems = (1 << CountBits) - 1;

    // One value alone on its cache line(s): 128 bytes with the value in the middle keeps neighbours (the adjacent-line
    // prefetcher pairs lines) off it.
    [StructLayout(LayoutKind.Explicit, Size = 192)]
    private struct Padded
    {
        [FieldOffset(64)] public long Value;
    }

    private readonly Thread[] _threads;
    private readonly SemaphoreSlim _wake = new(0);
    private readonly long _spinTicks, _waitSpinTicks;
    private Padded _state;     // claim word: every participant adds to it once per item
    private Padded _remaining; // items not yet reported done; the caller polls it at the end of a job
    private Padded _sleepers;  // workers blocked (or about to block) on _wake
    // Homed jobs (RunHomed): per participant, generation (20 bits) | front (20) | back (20) of its contiguous range
    private readonly Padded[] _ranges;
    private volatile bool _homed;
    private ParallelWork? _work;
    private volatile bool _stop;
    private ExceptionDispatchInfo? _error;
    private long _generation;

    /// <summary>Creates a pool with <paramref name="threads"/> participants (the caller counts as one).</summary>
    public WorkerPool(int threads)
    {
        threads = Math.Max(1, threads);
        _spinTicks = Stopwatch.Frequency / 50_000;      // 20 µs of spinning for the next job, then block
        _waitSpinTicks = Stopwatch.Frequency / 20_000;  // 50 µs of tight polling for the last item, then yield
        _threads = new Thread[threads - 1];
        _ranges = new Padded[threads];
        for (int i = 0; i < _threads.Length; i++)
        {
            int id = i + 1;
            _threads[i] = new Thread(() => WorkerLoop(id)) { IsBackground = true, Name = $"hub-runtime-{id}" };
            _threads[i].Start();
        }
    }

    /// <summary>Number of participants, the caller included.</summary>
    public int Size => _threads.Length + 1;

    /// <summary>
    /// When set (length ≥ <see cref="Size"/>), each participant adds the Stopwatch ticks it spends inside
    /// <see cref="ParallelWork.Execute"/> to its slot: wall time minus busy time / Size is the pool's own cost (profiling).
    /// A slot at index <see cref="Size"/>, when present, takes the jobs the caller runs alone (one item, or a one-thread
    /// pool) instead of slot 0: those keep the others idle by choice, so their whole time is kernel time.
    /// </summary>
    internal long[]? BusyTicks { get; set; }

    /// <summary>
    /// Jobs handed to the workers (more than one item on a pool of two or more) since the pool started: unchanged over
    /// a call, the workers had nothing to do in it. Read by the caller's thread.
    /// </summary>
    public long ParallelJobs => _generation;

    /// <summary>
    /// Wakes blocked workers so they are spinning by the time the next <see cref="Run"/> comes: a request calls it at
    /// the start of a step, whose first parallel op follows a few microseconds of serial work, instead of paying the
    /// semaphore wake-up latency inside that op. Cheap when nobody sleeps; harmless when no job follows (the workers
    /// spin their usual 20 µs and block again).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Prewake()
    {
        if (Volatile.Read(ref _sleepers.Value) == 0) return;
        int s = (int)Interlocked.Exchange(ref _sleepers.Value, 0);
        if (s > 0) _wake.Release(s);
    }

    /// <summary>Runs <paramref name="work"/> for every index in [0, count) and returns when all are done.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Run(ParallelWork work, int count) => RunJob(work, count, homed: false);

    /// <summary>
    /// Runs <paramref name="work"/> for every index in [0, count) like <see cref="Run(ParallelWork, int)"/>, but each
    /// participant first runs its own contiguous share of the indices in order, then takes the rest of the others'
    /// shares from their ends. For streaming kernels (the decode GEMVs): each thread reads one sequential region, so its
    /// prefetches past a unit's end land in the unit it runs next instead of in the other core's, and a delayed
    /// participant's share is still taken over.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void RunHomed(ParallelWork work, int count) => RunJob(work, count, homed: HomedClaims);

    /// <summary>Bench switch: <see cref="RunHomed"/> claims as <see cref="Run(ParallelWork, int)"/> does when false.</summary>
    internal static bool HomedClaims { get; set; } = true;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void RunJob(ParallelWork work, int count, bool homed)
    {
        if (count <= 0) return;
        if (count == 1 || _threads.Length == 0)
        {
            if (BusyTicks is { } busy)
            {
                long t0 = Stopwatch.GetTimestamp();
                for (int i = 0; i < count; i++) work.Execute(i, 0);
                busy[busy.Length > Size ? Size : 0] += Stopwatch.GetTimestamp() - t0;
            }
            else for (int i = 0; i < count; i++) work.Execute(i, 0);
            return;
        }
        if (count > MaxItems) throw new ArgumentOutOfRangeException(nameof(count), $"{count} items exceed {MaxItems}");
        _work = work;
        Volatile.Write(ref _remaining.Value, count);
        long gen = (++_generation) & ((1L << (64 - GenShift)) - 1);
        if (homed)
        {
            // The ranges carry the generation, so a claim can only succeed on the job it read; the claim word below
            // starts exhausted, so a participant that takes this job for a plain one claims nothing.
            int p = _ranges.Length;
            for (int i = 0; i < p; i++)
                Volatile.Write(ref _ranges[i].Value, (gen << RangeGenShift) | ((long)count * i / p << RangeBits) | ((long)count * (i + 1) / p));
        }
        _homed = homed;
        // A full fence between publishing the job and reading the sleeper count: a worker increments the count and
        // then re-reads the claim word, so either it sees this job or this read sees its increment (no lost wake-up).
        Interlocked.Exchange(ref _state.Value, (gen << GenShift) | ((long)count << IndexBits) | (homed ? (long)count : 0L));
        if (Volatile.Read(ref _sleepers.Value) != 0)
        {
            int s = (int)Interlocked.Exchange(ref _sleepers.Value, 0);
            if (s > 0) _wake.Release(s);
        }
        if (homed) DrainHomed(0, gen); else Drain(0);
        if (Volatile.Read(ref _remaining.Value) != 0) WaitDone();
        _work = null;
        if (_error is { } e) { _error = null; e.Throw(); }
    }

    // The caller ran out of items: the others are finishing the ones they claimed (usually within one item's time).
    // Poll tightly for a while, then yield so a worker preempted by a neighbour process gets the core back.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void WaitDone()
    {
        long start = Stopwatch.GetTimestamp();
        while (Volatile.Read(ref _remaining.Value) != 0)
        {
            Pause();
            if (Stopwatch.GetTimestamp() - start > _waitSpinTicks)
            {
                var sw = new SpinWait();
                while (Volatile.Read(ref _remaining.Value) != 0) sw.SpinOnce(-1);
                return;
            }
        }
    }

    private static void Pause()
    {
        if (X86Base.IsSupported) X86Base.Pause();
        else Thread.SpinWait(1);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Drain(int worker)
    {
        int done = 0;
        long[]? busy = BusyTicks;
        long t0 = busy is null ? 0 : Stopwatch.GetTimestamp();
        int share = 4 * Size;
        while (true)
        {
            // Guided claims: a run of (items left) / (4 × participants) items per atomic add, down to single items at
            // the end, so a 32-item job costs about half the atomics and a delayed participant holds at most 1/8 of it.
            long seen = Volatile.Read(ref _state.Value);
            long left = ((seen >> IndexBits) & CountMask) - (seen & IndexMask);
            if (left <= 0) break;
            long take = Math.Max(1, left / share);
            long s = Interlocked.Add(ref _state.Value, take) - take;
            long idx = s & IndexMask, cnt = (s >> IndexBits) & CountMask;
            if (idx >= cnt) break;
            long end = Math.Min(cnt, idx + take);
            // [idx, end) was claimed from the current job, which cannot finish before these items report: _work is its work.
            var w = Volatile.Read(ref _work);
            for (; idx < end; idx++)
            {
                try { w!.Execute((int)idx, worker); }
                catch (Exception ex) { Interlocked.CompareExchange(ref _error, ExceptionDispatchInfo.Capture(ex), null); }
                done++;
            }
        }
        if (busy is not null && done > 0) busy[worker] += Stopwatch.GetTimestamp() - t0;
        if (done > 0) Interlocked.Add(ref _remaining.Value, -done);
    }

    // A range word holds front and back (each up to MaxItems: RangeBits ≥ CountBits) and the job's generation, which is
    // 64 − GenShift = 20 bits wide: 20 + 2 × 20 = 60 bits.
    private const int RangeBits = CountBits, RangeGenShift = 2 * RangeBits;
    private const long RangeMask = (1L << RangeBits) - 1;

    // A homed job's claims: the participant's own range from its front, one index per claim (the range's word is
    // uncontended until another participant runs out), then the other ranges from their backs, a share of what is
    // left per claim, run front to back. Every claim is a compare-exchange on a word that carries the job's
    // generation, so a participant that read an older job's generation claims nothing of a newer one.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void DrainHomed(int worker, long gen)
    {
        int done = 0, p = _ranges.Length;
        long[]? busy = BusyTicks;
        long t0 = busy is null ? 0 : Stopwatch.GetTimestamp();
        ref long own = ref _ranges[worker].Value;
        while (true)
        {
            long v = Volatile.Read(ref own);
            if (v >>> RangeGenShift != gen) goto finish;
            long front = (v >> RangeBits) & RangeMask, back = v & RangeMask;
            if (front >= back) break;
            if (Interlocked.CompareExchange(ref own, v + (1L << RangeBits), v) != v) continue;
            Execute(Volatile.Read(ref _work)!, (int)front, worker);
            done++;
        }
        for (int d = 1; d < p; d++)
        {
            ref long other = ref _ranges[(worker + d) % p].Value;
            while (true)
            {
                long v = Volatile.Read(ref other);
                if (v >>> RangeGenShift != gen) goto finish;
                long front = (v >> RangeBits) & RangeMask, back = v & RangeMask;
                if (front >= back) break;
                long take = Math.Max(1, (back - front) / p);
                if (Interlocked.CompareExchange(ref other, v - take, v) != v) continue;
                var w = Volatile.Read(ref _work)!;
                for (long i = back - take; i < back; i++) { Execute(w, (int)i, worker); done++; }
            }
        }
    finish:
        if (busy is not null && done > 0) busy[worker] += Stopwatch.GetTimestamp() - t0;
        if (done > 0) Interlocked.Add(ref _remaining.Value, -done);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Execute(ParallelWork w, int index, int worker)
    {
        try { w.Execute(index, worker); }
        catch (Exception ex) { Interlocked.CompareExchange(ref _error, ExceptionDispatchInfo.Capture(ex), null); }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void WorkerLoop(int id)
    {
        long seenGen = 0;
        while (!_stop)
        {
            long start = Stopwatch.GetTimestamp();
            long gen;
            while ((gen = Volatile.Read(ref _state.Value) >>> GenShift) == seenGen && !_stop)
            {
                if (Stopwatch.GetTimestamp() - start > _spinTicks)
                {
                    Interlocked.Increment(ref _sleepers.Value);
                    if ((Volatile.Read(ref _state.Value) >>> GenShift) == seenGen && !_stop) _wake.Wait();
                    start = Stopwatch.GetTimestamp();
                }
                else
                {
                    Pause(); Pause(); Pause(); Pause();
                }
            }
            if (_stop) return;
            seenGen = gen;
            // _homed belongs to the job published with this generation or a later one: a homed drain checks the
            // generation on every claim, and a plain one claims nothing from a homed job's exhausted claim word.
            if (_homed) DrainHomed(id, gen); else Drain(id);
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _stop = true;
        _wake.Release(_threads.Length + 1);
        foreach (var t in _threads) t.Join();
        _wake.Dispose();
    }
}
