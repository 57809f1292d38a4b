// Beam search on the stateful cache, after transformers' BeamSearchScorer / BeamHypotheses (generation/beam_search.py):
// - the prompts are prefilled ONCE (left-padded, one row each) and the cache is then expanded to num_beams rows per
//   prompt with ReorderCache; all prompts' beams share the batch (prompt p owns rows p·k .. p·k+k-1);
// - every step scores log_softmax(logits) (after the logits processors) + the beam's running score, keeps the best
//   max(2, 1 + #eos) · num_beams candidates; an eos candidate ranked within the first num_beams becomes a finished
//   hypothesis scored sum_logprobs / generated_len^length_penalty (generated_len counts the eos), the others continue;
// - the cache follows the surviving beams with ReorderCache(beamIdx) before their new tokens are fed;
// - done per early_stopping: True = num_beams hypotheses; Heuristic (false) = the best running score normalized by the
//   current length cannot beat the worst hypothesis; Never = same bound at max_length when length_penalty > 0;
// - at the end unfinished beams join the hypotheses and the num_return_sequences best are returned.
// A prompt whose search is done keeps feeding padding with its output frozen.
// Beam sampling (do_sample with num_beams > 1), after transformers' unified _beam_search: the warpers (temperature,
// top-k, top-p, min-p, typical) also run on each beam's processed log-probabilities, the beam's running score is added,
// and instead of the best candidates, max(2, 1 + #eos) · num_beams candidates are drawn WITHOUT replacement from
// softmax over all (beam, token) scores of the prompt (torch.multinomial), then ranked by score. Drawing uses the Gumbel
// top-k trick (score + Gumbel noise, keep the largest keys), which samples exactly that way and stays exact when a tiny
// temperature makes the distribution one-hot; so temperature → 0 gives beam search's candidates. Seeded by Seed.

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

    // One prompt's beams: rows [Offset, Offset + k) of the batch.
    private sealed class Group
    {
        public required int[] Prompt;
        public required int Offset;
        public required Hypotheses Hyps;
        public required int[][] Hist, NextHist;
        public required float[] Scores, NextScores;
        public int LiveRows = 1; // first step: all beams equal, only beam 0 expands (transformers gives the others -1e9)
        public bool Done;
    }

    public static GenerationResult Run(ICausalLMRunner model, IReadOnlyList<int[]> prompts, GenerationConfig config,
                                       GenerationHooks? hooks, CancellationToken ct)
    {
        int k = config.NumBeams, vocab = model.VocabSize, nPrompts = prompts.Count;
        int maxPrompt = prompts.Max(p => p.Length);
        int maxNew = Generator.ClampToContext(model, maxPrompt, config.ResolveMaxNewTokens(maxPrompt));
        var eos = config.EosTokenId ?? Array.Empty<int>();
        int pad = Generator.PadId(config);
        var pipeline = new LogitsPipeline(config, vocab, eos, minTokensToKeep: 2);
        int candidates = Math.Max(2, 1 + eos.Length) * k;

        // Prefill every prompt once (left-padded, batch = prompts), then expand each row to k beams.
        var tokens = new int[nPrompts * maxPrompt];
        var padding = new int[nPrompts];
        var groups = new Group[nPrompts];
        for (int p = 0; p < nPrompts; p++)
        {
            var prompt = prompts[p];
            padding[p] = maxPrompt - prompt.Length;
            tokens.AsSpan(p * maxPrompt, padding[p]).Fill(pad);
            prompt.CopyTo(tokens.AsSpan(p * maxPrompt + padding[p]));
            var g = new Group
            {
                Prompt = prompt, Offset = p * k, Hyps = new Hypotheses(k, config.LengthPenalty, config.EarlyStopping, maxNew),
                Hist = new int[k][], NextHist = new int[k][], Scores = new float[k], NextScores = new float[k],
            };
            for (int i = 0; i < k; i++) { g.Hist[i] = new int[prompt.Length + maxNew]; g.NextHist[i] = new int[prompt.Length + maxNew]; prompt.CopyTo(g.Hist[i], 0); }
            groups[p] = g;
        }
        var beamPadding = new int[nPrompts * k];
        for (int r = 0; r < beamPadding.Length; r++) beamPadding[r] = padding[r / k];

        var beamIdx = new int[nPrompts * k];     // global source row of every new beam
        var nextTokens = new int[nPrompts * k];
        var row = new float[vocab];
        var candScore = new float[candidates];
        var candFlat = new long[candidates];
        var candKey = new float[candidates];
        bool sample = config.DoSample;
        var rng = new Xoshiro256(config.Seed ?? (ulong)Random.Shared.NextInt64());
        bool cancelled = false;
        int len = 0; // generated tokens so far (same for every live beam)

        model.Reset();
        model.ReserveBatch(nPrompts * k);
        var logits = model.Forward(tokens, nPrompts, maxPrompt, padding);
        bool prefill = true;

        for (int step = 0; step < maxNew; step++)
        {
            if (ct.IsCancellationRequested) { cancelled = true; break; }
            for (int p = 0; p < nPrompts; p++)
            {
                var g = groups[p];
                int hl = g.Prompt.Length + len;
                if (g.Done)
                {
                    // finished prompts keep their rows and feed padding (their output is frozen)
                    for (int i = 0; i < k; i++) { beamIdx[g.Offset + i] = g.Offset + i; nextTokens[g.Offset + i] = pad; }
                    continue;
                }
                // Top candidates over all (beam, token), by score; ties prefer the lower (beam, token).
                int n = 0;
                for (int b = 0; b < g.LiveRows; b++)
                {
                    int src = prefill ? p : g.Offset + b;
                    logits.Slice(src * vocab, vocab).CopyTo(row);
                    LogitsProcessors.LogSoftmax(row);
                    pipeline.Process(row, g.Hist[b].AsSpan(0, hl), len);
                    if (sample) pipeline.Warp(row);
                    for (int t = 0; t < vocab; t++)
                    {
                        var sc = row[t] + g.Scores[b];
                        if (float.IsNaN(sc) || float.IsNegativeInfinity(sc)) continue;
                        // sampling ranks by score + Gumbel(0, 1) noise: the top keys are a draw without replacement
                        var key = sample ? sc + Gumbel(ref rng) : sc;
                        long flat = (long)b * vocab + t;
                        if (n < candidates) Insert(candKey, candScore, candFlat, ref n, key, sc, flat);
                        else if (key > candKey[n - 1]) { n--; Insert(candKey, candScore, candFlat, ref n, key, sc, flat); }
                    }
                }
                if (sample) SortByScore(candScore, candFlat, n); // transformers sorts the drawn candidates by score

                int kept = 0;
                for (int rank = 0; rank < n && kept < k; rank++)
                {
                    int b = (int)(candFlat[rank] / vocab), t = (int)(candFlat[rank] % vocab);
                    if (Array.IndexOf(eos, t) >= 0)
                    {
                        if (rank >= k) continue;
                        var seq = new int[len + 1];
                        g.Hist[b].AsSpan(g.Prompt.Length, len).CopyTo(seq);
                        seq[len] = t;
                        g.Hyps.Add(seq, candScore[rank], len + 1, eos: true);
                        continue;
                    }
                    g.Hist[b].AsSpan(0, hl).CopyTo(g.NextHist[kept]);
                    g.NextHist[kept][hl] = t;
                    g.NextScores[kept] = candScore[rank];
                    beamIdx[g.Offset + kept] = prefill ? p : g.Offset + b;
                    nextTokens[g.Offset + kept] = t;
                    kept++;
                }
                if (kept == 0)
                {
                    // every candidate was eos: nothing left to extend
                    g.Done = true;
                    for (int i = 0; i < k; i++) { beamIdx[g.Offset + i] = prefill ? p : g.Offset + i; nextTokens[g.Offset + i] = pad; }
                    continue;
                }
                for (int i = kept; i < k; i++) // fewer candidates than beams (tiny vocab): duplicate with -inf score
                {
                    g.NextHist[kept - 1].AsSpan(0, hl + 1).CopyTo(g.NextHist[i]);
                    g.NextScores[i] = float.NegativeInfinity;
                    beamIdx[g.Offset + i] = beamIdx[g.Offset + kept - 1];
                    nextTokens[g.Offset + i] = nextTokens[g.Offset + kept - 1];
                }
                (g.Hist, g.NextHist) = (g.NextHist, g.Hist);
                (g.Scores, g.NextScores) = (g.NextScores, g.Scores);
                g.LiveRows = k;
                g.Done = g.Hyps.IsDone(candScore[0], len + 1);
            }
            len++;
            if (groups.All(g => g.Done) || step + 1 >= maxNew || model.PastLength + 1 > model.MaxContext) break;
            model.ReorderCache(beamIdx); // after the prefill this expands each prompt's row to its k beams
            logits = model.Forward(nextTokens, nPrompts * k, 1, beamPadding);
            prefill = false;
        }

        var seqs = new List<int[]>();
        var reasons = new List<FinishReason>();
        var scores = new List<float>();
        var texts = new List<string?>();
        for (int p = 0; p < nPrompts; p++)
        {
            var g = groups[p];
            if (!g.Done && len > 0)
                for (int b = 0; b < g.LiveRows; b++)
                    if (!float.IsNegativeInfinity(g.Scores[b]))
                        g.Hyps.Add(g.Hist[b].AsSpan(g.Prompt.Length, len).ToArray(), g.Scores[b], len, eos: false);
            var best = g.Hyps.Items.OrderByDescending(h => h.Score).Take(config.NumReturnSequences).ToList();
            foreach (var h in best)
            {
                seqs.Add(h.Tokens);
                reasons.Add(h.Eos ? FinishReason.Eos : cancelled ? FinishReason.Cancelled : FinishReason.Length);
                scores.Add(h.Score);
                texts.Add(hooks?.Decode is { } d ? d(h.Tokens) : null);
            }
            for (int i = best.Count; i < config.NumReturnSequences; i++) // cancelled before the first step: nothing to rank
            {
                seqs.Add(Array.Empty<int>());
                reasons.Add(FinishReason.Cancelled);
                scores.Add(float.NegativeInfinity);
                texts.Add(hooks?.Decode is null ? null : "");
            }
            // A streamer sees the best sequence of each prompt once it is known (beams change until the end).
            if (hooks?.OnToken is { } on) foreach (var id in seqs[p * config.NumReturnSequences]) on(p, id);
        }
        return new GenerationResult(seqs.ToArray(), reasons.ToArray(), texts.ToArray(), scores.ToArray(), config.NumReturnSequences);
    }

    // Inserts into arrays kept descending by key (stable for equal keys: a later, higher flat index goes after earlier ones).
    private static void Insert(float[] keys, float[] scores, long[] flats, ref int n, float key, float s, long flat)
    {
        int i = n;
        while (i > 0 && keys[i - 1] < key) { keys[i] = keys[i - 1]; scores[i] = scores[i - 1]; flats[i] = flats[i - 1]; i--; }
        keys[i] = key;
        scores[i] = s;
        flats[i] = flat;
        n++;
    }

    // Stable insertion sort of the first n candidates by descending score (n is a few times num_beams).
    private static void SortByScore(float[] scores, long[] flats, int n)
    {
        for (int j = 1; j < n; j++)
        {
            float s = scores[j];
            long f = flats[j];
            int i = j;
            while (i > 0 && scores[i - 1] < s) { scores[i] = scores[i - 1]; flats[i] = flats[i - 1]; i--; }
            scores[i] = s;
            flats[i] = f;
        }
    }

    // A standard Gumbel draw, -log(-log(u)) with u in (0, 1).
    private static float Gumbel(ref Xoshiro256 rng)
    {
        double u = (rng.NextUInt64() >> 11) * (1.0 / (1UL << 53));
        if (u <= 0) u = double.Epsilon;
        return (float)-Math.Log(-Math.Log(u));
    }
}
