// Streaming text out of a generation, as transformers' TextStreamer / TextIteratorStreamer do: ids go through the
// tokenizer's StreamingDecoder (which never emits half a UTF-8 character), and text that could still turn into a stop
// string is held back until it cannot, so a streamed answer never shows a stop string the final text drops; the last
// grapheme cluster is held back too, so that a piece never ends inside an emoji sequence or before a combining mark.

using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Hub.Tokenization;

namespace Hub.Generation;

/// <summary>
/// Turns the ids of ONE generated sequence into text pieces for display; the concatenation of all pieces equals the
/// final text (decoded continuation cut at the first stop string).
/// </summary>
public sealed class TextStreamer
{
    private readonly StreamingDecoder _decoder;
    private readonly Action<string> _onText;
    private readonly string[] _stops;
    private readonly bool _includeStop;
    private readonly System.Text.StringBuilder _pending = new();
    private bool _stopped;

    /// <summary>Creates a streamer writing pieces to <paramref name="onText"/>; <paramref name="stopStrings"/> are held back and cut.</summary>
    public TextStreamer(HubTokenizer tokenizer, Action<string> onText, IEnumerable<string>? stopStrings = null,
                        bool includeStopString = false, bool skipSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(onText);
        _decoder = tokenizer.CreateStreamingDecoder(skipSpecialTokens);
        _onText = onText;
        _stops = stopStrings?.Where(s => !string.IsNullOrEmpty(s)).ToArray() ?? Array.Empty<string>();
        _includeStop = includeStopString;
    }

    /// <summary>True once a stop string was seen; later ids are ignored.</summary>
    public bool Stopped => _stopped;

    /// <summary>Adds one generated id.</summary>
    public void Put(int id)
    {
        if (_stopped) return;
        var piece = _decoder.Push(id);
        if (piece.Length > 0) Emit(piece, final: false);
    }

    /// <summary>Flushes whatever is held back; call once when generation ends.</summary>
    public void End()
    {
        if (_stopped) return;
        Emit(_decoder.Flush(), final: true);
    }

    /// <summary>Hooks that feed this streamer with the tokens of <paramref name="row"/>.</summary>
    public GenerationHooks ToHooks(int row = 0, TokenDecoder? decode = null) =>
        new() { OnToken = (r, id) => { if (r == row) Put(id); }, Decode = decode };

    private void Emit(string piece, bool final)
    {
        _pending.Append(piece);
        if (_pending.Length == 0) return;
        var text = _pending.ToString();
        if (_stops.Length > 0)
        {
            var (at, len) = Generator.FindStop(text, _stops);
            if (at >= 0)
            {
                _stopped = true;
                var outText = text[..(_includeStop ? at + len : at)];
                if (outText.Length > 0) _onText(outText);
                _pending.Clear();
                return;
            }
        }
        // Hold back a possible stop-string prefix, and the last grapheme cluster, which the next token may still extend
        // (an emoji modifier or ZWJ sequence, a combining mark): a piece never splits a user-perceived character.
        int hold = final ? 0 : Math.Max(HeldBack(text), text.Length - LastGraphemeStart(text));
        if (text.Length - hold > 0)
        {
            _onText(text[..^hold]);
            _pending.Remove(0, text.Length - hold);
        }
    }

    private static int LastGraphemeStart(string text)
    {
        int start = 0;
        var e = System.Globalization.StringInfo.GetTextElementEnumerator(text);
        while (e.MoveNext()) start = e.ElementIndex;
        return start;
    }

    // Length of the longest suffix of text that is a proper prefix of a stop string.
    private int HeldBack(string text)
    {
        int best = 0;
        foreach (var s in _stops)
            for (int l = Math.Min(s.Length - 1, text.Length); l > best; l--)
                if (text.AsSpan(text.Length - l).SequenceEqual(s.AsSpan(0, l))) { best = l; break; }
        return best;
    }
}

/// <summary>Asynchronous streaming over <see cref="Generator"/>: generation runs on a worker thread, pieces flow through a channel.</summary>
public static class GenerationStreaming
{
    /// <summary>
    /// Generates a continuation of <paramref name="prompt"/> and yields its text pieces as they are decoded (never half a
    /// UTF-8 character, never a stop string the final text drops). Cancelling <paramref name="ct"/> or leaving the
    /// enumeration early stops the generation. The runner must not be used by anyone else until enumeration ends.
    /// </summary>
    public static async IAsyncEnumerable<string> GenerateStreamAsync(ICausalLMRunner model, HubTokenizer tokenizer, int[] prompt,
        GenerationConfig config, [EnumeratorCancellation] CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        config.Validate();
        if (config.NumBeams > 1 || config.NumReturnSequences > 1)
            throw new GenerationConfigException(new[] { "num_beams", "num_return_sequences" }, "streaming returns one sequence: use num_beams = 1 and num_return_sequences = 1, or call Generate");
        // Bounded: generation waits for a slow reader instead of racing ahead (and stops promptly when cancelled).
        var pieces = WorkerStream(capacity: 16, (emit, token) =>
        {
            var streamer = new TextStreamer(tokenizer, emit, config.StopStrings, config.IncludeStopStrInOutput);
            var hooks = streamer.ToHooks(0, ids => tokenizer.Decode(ids, skipSpecialTokens: true));
            Generator.Generate(model, new[] { prompt }, config, hooks, token);
            streamer.End();
        }, ct);
        await foreach (var piece in pieces.ConfigureAwait(false)) yield return piece;
    }

    /// <summary>
    /// Runs <paramref name="produce"/> on a worker thread and yields the pieces it emits, through a channel of
    /// <paramref name="capacity"/> pieces (0: unbounded). Its exception surfaces from the enumeration; cancelling
    /// <paramref name="ct"/> or leaving the enumeration early cancels the token handed to it and waits for it to end.
    /// </summary>
    internal static async IAsyncEnumerable<string> WorkerStream(int capacity, Action<Action<string>, CancellationToken> produce,
        [EnumeratorCancellation] CancellationToken ct)
    {
        var channel = capacity > 0
            ? Channel.CreateBounded<string>(new BoundedChannelOptions(capacity) { SingleReader = true, SingleWriter = true, FullMode = BoundedChannelFullMode.Wait })
            : Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var worker = Task.Run(() =>
        {
            try
            {
                produce(piece =>
                {
                    if (!channel.Writer.TryWrite(piece)) channel.Writer.WriteAsync(piece, cts.Token).AsTask().GetAwaiter().GetResult();
                }, cts.Token);
                channel.Writer.TryComplete();
            }
            catch (Exception e)
            {
                channel.Writer.TryComplete(e);
            }
        }, CancellationToken.None);

        try
        {
            await foreach (var piece in channel.Reader.ReadAllAsync(ct).ConfigureAwait(false))
            {
                ct.ThrowIfCancellationRequested(); // buffered pieces are not handed out after a cancel
                yield return piece;
            }
            await worker.ConfigureAwait(false);
        }
        finally
        {
            await cts.CancelAsync().ConfigureAwait(false);
            try { await worker.ConfigureAwait(false); } catch { /* already surfaced through the channel */ }
        }
    }
}
