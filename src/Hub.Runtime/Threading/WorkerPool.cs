// A persistent worker pool for the per-token path: no delegates, no Parallel.For, no allocation per dispatch.
// Workers spin for a few microseconds after a job (ops follow each other closely during decode) and then block on a
// semaphore, so a core shared with a busy neighbour costs a proportional slowdown instead of a spin-wait collapse.
using System.Diagnostics;
using System.Runtime.ExceptionServices;

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
    // _state packs generation (24 bits) | count (20 bits) | next index (20 bits), so a worker that wakes late can
    // never claim an index of a job other than the one whose count it read (the CAS compares all three).
    private const int IndexBits = 20;
    private const long IndexMask = (1L << IndexBits) - 1;
    /// <summary>Largest number of items one dispatch may have.</summary>
    public const int MaxItems = (1 << IndexBits) - 1;

    private readonly Thread[] _threads;
    private readonly SemaphoreSlim _wake = new(0);
    private readonly long _spinTicks;
    private long _state;
    private ParallelWork? _work;
    private int _remaining;
    private int _sleepers;
    private volatile bool _stop;
    private ExceptionDispatchInfo? _error;
    private long _generation;

    /// <summary>Creates a pool with <paramref name="threads"/> participants (the caller counts as one).</summary>
    public WorkerPool(int threads)
    {
        threads = Math.Max(1, threads);
        _spinTicks = Stopwatch.Frequency / 50_000; // 20 µs
        _threads = new Thread[threads - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            int id = i + 1;
            _threads[i] = new Thread(() => WorkerLoop(id)) { IsBackground = true, Name = $"hub-runtime-{id}" };
            _threads[i].Start();
        }
    }

    /// <summary>Number of participants, the caller included.</summary>
    public int Size => _threads.Length + 1;

    /// <summary>Runs <paramref name="work"/> for every index in [0, count) and returns when all are done.</summary>
    public void Run(ParallelWork work, int count)
    {
        if (count <= 0) return;
        if (count == 1 || _threads.Length == 0)
        {
            for (int i = 0; i < count; i++) work.Execute(i, 0);
            return;
        }
        if (count > MaxItems) throw new ArgumentOutOfRangeException(nameof(count));
        _work = work;
        Volatile.Write(ref _remaining, count);
        long gen = (++_generation) & 0xFFFFFF;
        Volatile.Write(ref _state, (gen << (2 * IndexBits)) | ((long)count << IndexBits));
        int s = Interlocked.Exchange(ref _sleepers, 0);
        if (s > 0) _wake.Release(s);
        Drain(0);
        var sw = new SpinWait();
        while (Volatile.Read(ref _remaining) != 0) sw.SpinOnce(-1);
        _work = null;
        if (_error is { } e) { _error = null; e.Throw(); }
    }

    private void Drain(int worker)
    {
        while (true)
        {
            long s = Volatile.Read(ref _state);
            long idx = s & IndexMask, cnt = (s >> IndexBits) & IndexMask;
            if (idx >= cnt) return;
            var w = Volatile.Read(ref _work);
            if (Interlocked.CompareExchange(ref _state, s + 1, s) != s) continue;
            // The CAS succeeded with idx < cnt, so this job is not finished and _work (read after _state) is its work.
            try { w!.Execute((int)idx, worker); }
            catch (Exception ex) { Interlocked.CompareExchange(ref _error, ExceptionDispatchInfo.Capture(ex), null); }
            Interlocked.Decrement(ref _remaining);
        }
    }

    private void WorkerLoop(int id)
    {
        long seenGen = 0;
        while (!_stop)
        {
            long start = Stopwatch.GetTimestamp();
            long gen;
            while ((gen = Volatile.Read(ref _state) >> (2 * IndexBits)) == seenGen && !_stop)
            {
                if (Stopwatch.GetTimestamp() - start > _spinTicks)
                {
                    Interlocked.Increment(ref _sleepers);
                    if ((Volatile.Read(ref _state) >> (2 * IndexBits)) == seenGen && !_stop) _wake.Wait();
                    start = Stopwatch.GetTimestamp();
                }
                else Thread.SpinWait(16);
            }
            if (_stop) return;
            seenGen = gen;
            Drain(id);
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
