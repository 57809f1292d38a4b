using Hub.IR;
using Hub.Models.ChatGlm;

namespace Hub.Models.Tests;

/// <summary>One forward step of a ChatGLM graph: whatever executes it (reference executor, runtime).</summary>
internal interface IChatGlmStepper
{
    /// <summary>Runs the graph; returns logits [batch, kept, vocab] row-major.</summary>
    float[] Step(int[] ids, int batch, int seq, int[] positionIds, int[] positionShape, float[]? attentionMask, int[]? prefixLength, int logitsToKeep);

    /// <summary>Empties the cache.</summary>
    void Reset();
}

/// <summary>
/// The host side of ChatGLM generation as the conventions in docs/model-graphs.md describe it: positions and masks are
/// computed from the ids and the left padding (v2/v3: linear positions; v1: <see cref="ChatGlm1Positions"/>), never read
/// from the golden files.
/// </summary>
internal sealed class ChatGlmHost
{
    private readonly IChatGlmStepper _stepper;
    private readonly ChatGlmConfig _config;
    private int[] _leftPad = Array.Empty<int>();
    private ChatGlm1Layout[] _layouts = Array.Empty<ChatGlm1Layout>();
    private int _past, _batch;

    public ChatGlmHost(IChatGlmStepper stepper, ChatGlmConfig config) { _stepper = stepper; _config = config; }

    public int Vocab => _config.VocabSize;

    /// <summary>The positions the host computed for the last step (for checks against the golden file).</summary>
    public int[] LastPositions { get; private set; } = Array.Empty<int>();

    /// <summary>Runs the prompt rows (left-padded with the pad id) and returns logits for every position.</summary>
    public float[] Prompt(int[][] rows)
    {
        _stepper.Reset();
        _batch = rows.Length;
        int seq = rows[0].Length;
        var ids = rows.SelectMany(r => r).ToArray();
        _past = 0;
        float[] logits;
        int pad = _config.PadTokenId ?? 0;
        _leftPad = rows.Select(r => { int n = 0; while (n < r.Length && r[n] == pad) n++; return n; }).ToArray();
        if (_config.Variant == ChatGlmVariant.V1)
        {
            var pos = new int[_batch * 2 * seq];
            var prefix = new int[_batch];
            _layouts = ChatGlm1Positions.ForPrompt(ids, _batch, seq, _leftPad, new ChatGlm1SpecialTokens(_config.MaskTokenId!.Value, _config.GMaskTokenId!.Value, _config.BosTokenId!.Value), pos, prefix);
            LastPositions = pos;
            logits = _stepper.Step(ids, _batch, seq, pos, new[] { _batch, 2, seq }, Mask(seq), prefix, 0);
        }
        else
        {
            var pos = new int[_batch * seq];
            for (int b = 0; b < _batch; b++)
                for (int t = 0; t < seq; t++) pos[b * seq + t] = Math.Max(0, t - _leftPad[b]);
            LastPositions = pos;
            logits = _stepper.Step(ids, _batch, seq, pos, new[] { _batch, seq }, Mask(seq), null, 0);
        }
        _past = seq;
        return logits;
    }

    /// <summary>Appends one token per row and returns the last logits row per row [batch, vocab].</summary>
    public float[] Next(int[] tokens)
    {
        float[] logits;
        if (_config.Variant == ChatGlmVariant.V1)
        {
            var pos = new int[_batch * 2];
            var prefix = new int[_batch];
            ChatGlm1Positions.ForStep(_layouts, _leftPad, _past, 1, pos, prefix);
            logits = _stepper.Step(tokens, _batch, 1, pos, new[] { _batch, 2, 1 }, Mask(_past + 1), prefix, 1);
        }
        else
        {
            var pos = new int[_batch];
            for (int b = 0; b < _batch; b++) pos[b] = _past - _leftPad[b];
            logits = _stepper.Step(tokens, _batch, 1, pos, new[] { _batch, 1 }, Mask(_past + 1), null, 1);
        }
        _past++;
        return logits;
    }

    private float[] Mask(int total)
    {
        var m = new float[_batch * total];
        for (int b = 0; b < _batch; b++)
            for (int j = 0; j < total; j++) m[b * total + j] = j >= _leftPad[b] ? 1f : 0f;
        return m;
    }

    /// <summary>Greedy ids for every row: argmax (lowest id on ties) of the prompt's last row, then <paramref name="count"/>−1 cached steps.</summary>
    public int[][] Greedy(int[][] rows, int count)
    {
        var all = Prompt(rows);
        int seq = rows[0].Length, v = Vocab;
        var outIds = rows.Select(_ => new int[count]).ToArray();
        var next = new int[_batch];
        for (int b = 0; b < _batch; b++) next[b] = ArgMax(all.AsSpan(((b * seq) + seq - 1) * v, v));
        for (int step = 0; step < count; step++)
        {
            for (int b = 0; b < _batch; b++) outIds[b][step] = next[b];
            if (step == count - 1) break;
            var l = Next(next);
            next = new int[_batch];
            for (int b = 0; b < _batch; b++) next[b] = ArgMax(l.AsSpan(b * v, v));
        }
        return outIds;
    }

    public static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int i = 1; i < row.Length; i++) if (row[i] > row[best]) best = i;
        return best;
    }
}

/// <summary>Drives <see cref="ChatGlmReferenceExecutor"/> through the graph's named inputs.</summary>
internal sealed class ReferenceStepper : IChatGlmStepper
{
    private readonly ChatGlmReferenceExecutor _exec;
    public ReferenceStepper(ModelExport export, int capacity) => _exec = new ChatGlmReferenceExecutor(export, capacity);

    public void Reset() => _exec.Reset();

    public float[] Step(int[] ids, int batch, int seq, int[] positionIds, int[] positionShape, float[]? attentionMask, int[]? prefixLength, int logitsToKeep)
    {
        var ints = new Dictionary<string, (int[], int[])>
        {
            ["input_ids"] = (ids, new[] { batch, seq }),
            ["position_ids"] = (positionIds, positionShape),
            ["logits_to_keep"] = (new[] { logitsToKeep }, new[] { 1 }),
        };
        if (prefixLength is not null) ints[ChatGlm1Graph.PrefixLengthInput] = (prefixLength, new[] { batch });
        var floats = new Dictionary<string, (float[], int[])>();
        if (attentionMask is not null) floats["attention_mask"] = (attentionMask, new[] { batch, attentionMask.Length / batch });
        return _exec.Run(ints, floats).Data;
    }
}
