// One generation at a time per model (its KV cache is single-use), and a clear error instead of a deadlock when the
// flow that holds the gate asks for it again: Generate called from inside the model's own streaming loop or from an
// OnToken hook would otherwise wait forever for a gate only it can release.
//
// "This flow holds it" is an AsyncLocal marker. It is set by synchronous code (Enter, Held, and the synchronous part of
// a gated stream's MoveNextAsync/DisposeAsync), so it lands in the caller's execution context: the body of an
// `await foreach` over a gated stream, and every hook or worker task started under it, see it; other threads and
// tasks started elsewhere do not, and simply wait their turn.
namespace Hub;

/// <summary>
/// A generation was started on a model from the flow that is already running one on it (inside its streaming loop or an
/// OnToken hook), which would deadlock. Finish or dispose the running generation first, or use a second model instance.
/// </summary>
public sealed class GenerationReentryException : InvalidOperationException
{
    /// <summary>The model folder.</summary>
    public string ModelDirectory { get; }

    /// <summary>Creates the exception.</summary>
    public GenerationReentryException(string modelDirectory)
        : base($"{modelDirectory}: a generation is already running on this model in this flow (a Generate, chat or stream call from " +
               "inside its own streaming loop or an OnToken hook); finish or dispose the running generation first " +
               "(leave the await foreach, or collect the text and call again afterwards), or load a second model instance")
        => ModelDirectory = modelDirectory;
}

/// <summary>Serializes generations on one model and refuses re-entry from the flow that holds it.</summary>
internal sealed class GenerationGate(string modelDirectory)
{
    private static readonly AsyncLocal<Holder?> HeldHere = new();
    private readonly SemaphoreSlim _semaphore = new(1, 1);

    internal sealed record Holder(GenerationGate Gate, Holder? Outer);

    /// <summary>Throws <see cref="GenerationReentryException"/> when this flow already holds the gate.</summary>
    public void ThrowIfHeldByThisFlow()
    {
        for (var h = HeldHere.Value; h is not null; h = h.Outer)
            if (ReferenceEquals(h.Gate, this)) throw new GenerationReentryException(modelDirectory);
    }

    /// <summary>Waits for the gate (synchronously) and marks this flow as its holder until the lease is disposed.</summary>
    public Lease Enter(CancellationToken ct = default)
    {
        ThrowIfHeldByThisFlow();
        _semaphore.Wait(ct);
        return Mark();
    }

    /// <summary>Takes the gate if it is free; null when a generation is running.</summary>
    public Lease? TryEnter()
    {
        ThrowIfHeldByThisFlow();
        return _semaphore.Wait(0) ? Mark() : null;
    }

    /// <summary>
    /// Waits for the gate. An async method cannot mark its caller's flow from inside an awaited call, so it follows
    /// with <c>using var lease = gate.Held();</c>, which marks the rest of the method and releases the gate at its end.
    /// </summary>
    public async Task EnterAsync(CancellationToken ct)
    {
        ThrowIfHeldByThisFlow();
        await _semaphore.WaitAsync(ct).ConfigureAwait(false);
    }

    /// <summary>Marks this flow as the holder of the gate taken by <see cref="EnterAsync"/>; disposing releases it.</summary>
    public Lease Held() => Mark();

    /// <summary>
    /// A stream that takes the gate on its first MoveNextAsync, releases it on DisposeAsync, and marks the enumerating
    /// flow (the body of the consumer's <c>await foreach</c>) as the holder meanwhile. <paramref name="body"/> runs at
    /// the first MoveNextAsync with the gate held.
    /// </summary>
    public IAsyncEnumerable<T> Stream<T>(Func<CancellationToken, IAsyncEnumerable<T>> body, CancellationToken ct) =>
        new GatedStream<T>(this, body, ct);

    private Lease Mark()
    {
        var previous = HeldHere.Value;
        HeldHere.Value = new Holder(this, previous);
        return new Lease(this, previous);
    }

    /// <summary>Holding the gate: disposing restores the flow's marker and releases the gate (once).</summary>
    internal sealed class Lease(GenerationGate gate, Holder? previous) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            HeldHere.Value = previous;
            gate._semaphore.Release();
        }
    }

    private sealed class GatedStream<T>(GenerationGate gate, Func<CancellationToken, IAsyncEnumerable<T>> body, CancellationToken ct) : IAsyncEnumerable<T>
    {
        public IAsyncEnumerator<T> GetAsyncEnumerator(CancellationToken cancellationToken = default) =>
            new Enumerator<T>(gate, body, ct, cancellationToken);
    }

    private sealed class Enumerator<T> : IAsyncEnumerator<T>
    {
        private readonly GenerationGate _gate;
        private readonly Func<CancellationToken, IAsyncEnumerable<T>> _body;
        private readonly CancellationTokenSource? _linked;
        private readonly CancellationToken _ct;
        private IAsyncEnumerator<T>? _inner;
        private Holder? _previous;
        private bool _started, _marked, _entered, _disposed;

        public Enumerator(GenerationGate gate, Func<CancellationToken, IAsyncEnumerable<T>> body, CancellationToken a, CancellationToken b)
        {
            _gate = gate; _body = body;
            if (a.CanBeCanceled && b.CanBeCanceled && a != b) { _linked = CancellationTokenSource.CreateLinkedTokenSource(a, b); _ct = _linked.Token; }
            else _ct = a.CanBeCanceled ? a : b;
        }

        public T Current => _inner is null ? throw new InvalidOperationException("MoveNextAsync has not returned true") : _inner.Current;

        public ValueTask<bool> MoveNextAsync()
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_inner is not null) return _inner.MoveNextAsync();
            if (_started) return ValueTask.FromResult(false); // the first move failed; nothing more comes
            _started = true;
            // Synchronous, so the marker lands in the consumer's flow (the body of its await foreach).
            _gate.ThrowIfHeldByThisFlow();
            _previous = HeldHere.Value;
            HeldHere.Value = new Holder(_gate, _previous);
            _marked = true;
            return First();
        }

        private async ValueTask<bool> First()
        {
            await _gate._semaphore.WaitAsync(_ct).ConfigureAwait(false);
            _entered = true;
            var inner = _body(_ct).GetAsyncEnumerator(_ct);
            _inner = inner;
            return await inner.MoveNextAsync().ConfigureAwait(false);
        }

        public ValueTask DisposeAsync()
        {
            if (_disposed) return default;
            _disposed = true;
            // Synchronous: back in the consumer's flow. Only a stream that marked it unmarks it (a stream refused for
            // re-entry must leave the outer stream's marker in place).
            if (_marked) HeldHere.Value = _previous;
            return Core();

            async ValueTask Core()
            {
                try
                {
                    if (_inner is not null) await _inner.DisposeAsync().ConfigureAwait(false);
                }
                finally
                {
                    if (_entered) _gate._semaphore.Release();
                    _linked?.Dispose();
                }
            }
        }
    }
}
