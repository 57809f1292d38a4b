// Claims for parallel work whose items are adjacent pieces of one memory stream (the decode GEMVs' units of weight
// rows). WorkerPool hands out item indices first come, first served, so a participant's consecutive items are often
// far apart and each new one restarts its weight stream, while the software prefetch running ahead of its previous
// item fetched rows another core then reads. Here each participant owns one contiguous segment of the items and takes
// them front to back (one sequential stream whose prefetch runs into its own next item); a participant whose segment
// is done steals single items from the back of the others', so a participant delayed by a neighbour process still
// costs only the items it has not started. Session 11 measured it mixed (whole-model decode, small Q8_0, 2 threads:
// 1.10–1.17× in quieter periods, 0.83–0.90× with the host busy; docs/quantization.md), so it was not kept.
using System.Runtime.CompilerServices;

namespace Hub.Runtime.Threading;

/// <summary>
/// Item claims by segment for one <see cref="WorkerPool.Run"/> at a time: <see cref="Reset"/> before the run, then
/// every <see cref="ParallelWork.Execute"/> call of the run takes its item from <see cref="Claim"/> instead of its index.
/// </summary>
internal sealed class SegmentClaims
{
    // One claim word per segment, 128 bytes apart: [front (high 32 bits) | end (low 32 bits)) of the unclaimed items.
    private const int Stride = 16;
    private readonly long[] _words;

    /// <summary>Claims for a pool of <paramref name="participants"/> (one segment each).</summary>
    public SegmentClaims(int participants)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(participants, 1);
        Segments = participants;
        _words = new long[(participants + 1) * Stride];
    }

    /// <summary>Number of segments (the pool's participants).</summary>
    public int Segments { get; }

    /// <summary>Splits items [0, <paramref name="items"/>) into equal contiguous segments; call before the pool run.</summary>
    public void Reset(int items)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(items);
        for (int s = 0; s < Segments; s++)
        {
            long lo = (long)items * s / Segments, hi = (long)items * (s + 1) / Segments;
            Volatile.Write(ref _words[(s + 1) * Stride], (lo << 32) | hi);
        }
    }

    /// <summary>
    /// The next item for participant <paramref name="worker"/>: the front of its own segment, else the back of the
    /// next non-empty one; -1 when every item is taken (a run with as many Execute calls as items never sees it).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Claim(int worker)
    {
        int own = (int)((uint)worker % (uint)Segments);
        for (int d = 0; d < Segments; d++)
        {
            int s = own + d;
            if (s >= Segments) s -= Segments;
            ref long word = ref _words[(s + 1) * Stride];
            while (true)
            {
                long cur = Volatile.Read(ref word);
                int front = (int)(cur >>> 32), end = (int)(uint)cur;
                if (front >= end) break;
                // the owner advances the front, a thief lowers the end: they meet at the last item
                long next = d == 0 ? cur + (1L << 32) : cur - 1;
                if (Interlocked.CompareExchange(ref word, next, cur) == cur) return d == 0 ? front : end - 1;
            }
        }
        return -1;
    }
}
