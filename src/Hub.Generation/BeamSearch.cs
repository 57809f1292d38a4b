// Beam search on the stateful cache, after transformers' BeamSearchScorer / BeamHypotheses (generation/beam_search.py):
// - the prompt is prefilled ONCE with batch 1 and the cache is then expanded to num_beams rows with ReorderCache;
// - every step scores log_softmax(logits) (after the logits processors) + the beam's running score, keeps the best
//   max(2, 1 + #eos) · num_beams candidates; an eos candidate ranked within the first num_beams becomes a finished
//   hypothesis scored sum_logprobs / generated_len^length_penalty (generated_len counts the eos), the others continue;
// - the cache follows the surviving beams with ReorderCache(beamIdx) before their new tokens are fed;
// - done per early_stopping: True = num_beams hypotheses; Heuristic (false) = the best running score normalized by the
//   current length cannot beat the worst hypothesis; Never = same bound at max_length when length_penalty > 0;
// - at the end unfinished beams join the hypotheses and the num_return_sequences best are returned.
// Prompts of a batch are searched one after another (each with its own beams). Beam sampling is not supported.

namespace Hub.Generation;

internal static class BeamSearch
{
    private sealed class Hypotheses(int numBeams, float lengthPenalty, EarlyStoppingMode early, int maxNew)
    {
        public readonly List<(float Score, int[] Tokens, bool Eos)> Items = new();
        private float _worst = 1e9f;

        public void Add(int[] tokens, float sumLogProbs, int generatedLength, bool eos)
        {
            var score = sumLogProbs / MathF.Pow(generatedLength, lengthPenalty);
            if (Items.Count < numBeams || score > _worst)
            {
                Items.Add((score, tokens, eos));
                if (Items.Count > numBeams)
                {
                    int worstAt = 0;
                    for (int i = 1; i < Items.Count; i++) if (Items[i].Score < Items[worstAt].Score) worstAt = i;
                    Items.RemoveAt(worstAt);
                    _worst = Items.Min(h => h.Score);
                }
                else _worst = MathF.Min(score, _worst);
            }
        }

        public bool IsDone(float bestSumLogProbs, int generatedLength)
        {
            if (Items.Count < numBeams) return false;
            if (early == EarlyStoppingMode.True) return true;
            var len = early == EarlyStoppingMode.Never && lengthPenalty > 0 ? maxNew : generatedLength;
            var highest = bestSumLogProbs / MathF.Pow(len, lengthPenalty);
            return _worst >= highest;
        }
    }

    public static GenerationResult Run(ICausalLMRunner model, IReadOnlyList<int[]> prompts, GenerationConfig config,
                                       GenerationHooks? hooks, CancellationToken ct)
    {
        var seqs = new List<int[]>();
        var reasons = new List<FinishReason>();
        var texts = new List<string?>();
        var scores = new List<float>();
        for (int p = 0; p < prompts.Count; p++)
        {
            var (s, r, sc) = RunOne(model, prompts[p], config, ct);
            for (int i = 0; i < s.Count; i++)
            {
                seqs.Add(s[i]);
                reasons.Add(r[i]);
                scores.Add(sc[i]);
                texts.Add(hooks?.Decode is { } d ? d(s[i]) : null);
            }
            // A streamer sees the best sequence of each prompt once it is known (beams change until the end).
            if (hooks?.OnToken is { } on) foreach (var id in s[0]) on(p, id);
        }
        return new GenerationResult(seqs.ToArray(), reasons.ToArray(), texts.ToArray(), scores.ToArray(), config.NumReturnSequences);
    }

    private static (List<int[]>, List<FinishReason>, List<float>) RunOne(ICausalLMRunner model, int[] prompt, GenerationConfig config, CancellationToken ct)
    {
        int k = config.NumBeams, vocab = model.VocabSize;
        int maxNew = Generator.ClampToContext(model, prompt.Length, config.ResolveMaxNewTokens(prompt.Length));
        var eos = config.EosTokenId ?? Array.Empty<int>();
        var pipeline = new LogitsPipeline(config, vocab, eos, minTokensToKeep: 2);
        var hyps = new Hypotheses(k, config.LengthPenalty, config.EarlyStopping, maxNew);
        int candidates = Math.Max(2, 1 + eos.Length) * k;

        // beam histories: prompt + output; the cache rows follow them.
        var hist = new int[k][];
        var nextHist = new int[k][];
        for (int i = 0; i < k; i++) { hist[i] = new int[prompt.Length + maxNew]; nextHist[i] = new int[prompt.Length + maxNew]; prompt.CopyTo(hist[i], 0); }
        var beamScores = new float[k];
        var nextScores = new float[k];
        var beamIdx = new int[k];
        var nextTokens = new int[k];
        var row = new float[vocab];
        var candScore = new float[candidates];
        var candFlat = new long[candidates];
        bool cancelled = false;

        model.Reset();
        var logits = model.Forward(prompt, 1, prompt.Length, ReadOnlySpan<int>.Empty);
        int liveRows = 1; // first step: all beams equal, only beam 0 expands (transformers gives the others -1e9)
        bool done = false;
        int len = prompt.Length; // history length of every beam

        for (int step = 0; step < maxNew && !done; step++)
        {
            if (ct.IsCancellationRequested) { cancelled = true; break; }
            // Top candidates over all (beam, token), by score; ties prefer the lower (beam, token).
            int n = 0;
            for (int b = 0; b < liveRows; b++)
            {
                logits.Slice(b * vocab, vocab).CopyTo(row);
                LogitsProcessors.LogSoftmax(row);
                pipeline.Process(row, hist[b].AsSpan(0, len), step);
                for (int t = 0; t < vocab; t++)
                {
                    var s = row[t] + beamScores[b];
                    if (float.IsNaN(s) || float.IsNegativeInfinity(s)) continue;
                    long flat = (long)b * vocab + t;
                    if (n < candidates) { Insert(candScore, candFlat, ref n, s, flat); }
                    else if (s > candScore[n - 1]) { n--; Insert(candScore, candFlat, ref n, s, flat); }
                }
            }

            int kept = 0;
            for (int rank = 0; rank < n && kept < k; rank++)
            {
                int b = (int)(candFlat[rank] / vocab), t = (int)(candFlat[rank] % vocab);
                if (Array.IndexOf(eos, t) >= 0)
                {
                    if (rank >= k) continue;
                    var tokens = new int[step + 1];
                    hist[b].AsSpan(prompt.Length, step).CopyTo(tokens);
                    tokens[step] = t;
                    hyps.Add(tokens, candScore[rank], step + 1, eos: true);
                    continue;
                }
                hist[b].AsSpan(0, len).CopyTo(nextHist[kept]);
                nextHist[kept][len] = t;
                nextScores[kept] = candScore[rank];
                beamIdx[kept] = b;
                nextTokens[kept] = t;
                kept++;
            }
            if (kept < k)
            {
                if (kept == 0) { done = true; break; } // every candidate was eos: nothing left to extend
                for (int i = kept; i < k; i++) // fewer candidates than beams (tiny vocab): duplicate with -inf score
                {
                    nextHist[kept - 1].AsSpan(0, len + 1).CopyTo(nextHist[i]);
                    nextScores[i] = float.NegativeInfinity;
                    beamIdx[i] = beamIdx[kept - 1];
                    nextTokens[i] = nextTokens[kept - 1];
                }
            }
            (hist, nextHist) = (nextHist, hist);
            (beamScores, nextScores) = (nextScores, beamScores);
            len++;
            done = hyps.IsDone(n > 0 ? candScore[0] : float.NegativeInfinity, step + 1);
            if (done || step + 1 >= maxNew) break;
            if (model.PastLength + 1 > model.MaxContext) break;
            model.ReorderCache(beamIdx); // first step: all zeros, which expands the prefilled row to k beams
            logits = model.Forward(nextTokens, k, 1, ReadOnlySpan<int>.Empty);
            liveRows = k;
        }

        if (!done)
        {
            int generated = len - prompt.Length;
            for (int b = 0; b < (len == prompt.Length ? 0 : k); b++)
                if (!float.IsNegativeInfinity(beamScores[b]))
                    hyps.Add(hist[b].AsSpan(prompt.Length, generated).ToArray(), beamScores[b], generated, eos: false);
        }

        var best = hyps.Items.OrderByDescending(h => h.Score).Take(config.NumReturnSequences).ToList();
        var seqs = best.Select(h => h.Tokens).ToList();
        var reasons = best.Select(h => h.Eos ? FinishReason.Eos : cancelled ? FinishReason.Cancelled : FinishReason.Length).ToList();
        var scores = best.Select(h => h.Score).ToList();
        while (seqs.Count < config.NumReturnSequences) // cancelled before the first step: nothing to rank
        {
            seqs.Add(Array.Empty<int>());
            reasons.Add(FinishReason.Cancelled);
            scores.Add(float.NegativeInfinity);
        }
        return (seqs, reasons, scores);
    }

    // Inserts into a descending array (stable for equal scores: a later, higher flat index goes after earlier ones).
    private static void Insert(float[] scores, long[] flats, ref int n, float s, long flat)
    {
        int i = n;
        while (i > 0 && scores[i - 1] < s) { scores[i] = scores[i - 1]; flats[i] = flats[i - 1]; i--; }
        scores[i] = s;
        flats[i] = flat;
        n++;
    }
}
