namespace KvDb.Kernels;

/// <summary>
/// Indices of the k largest scores, best first. A bounded min-heap: O(n log k) with one compare per
/// element once the heap is full, which beats a sort for the k ≪ n every index search asks for.
/// </summary>
public static class TopKSelector
{
    /// <summary>
    /// Writes the indices of the min(k, scores.Length) largest scores into <paramref name="indices"/>,
    /// sorted by descending score (ties: lower index first); returns how many were written.
    /// </summary>
    public static int Select(ReadOnlySpan<float> scores, int k, Span<int> indices)
    {
        int n = scores.Length;
        k = Math.Min(Math.Min(k, n), indices.Length);
        if (k <= 0)
        {
            return 0;
        }

        // indices[0..size) is a min-heap on (score, -index): its root is the weakest kept element.
        int size = 0;
        for (int i = 0; i < n; i++)
        {
            float s = scores[i];
            if (float.IsNaN(s))
            {
                continue;
            }

            if (size < k)
            {
                indices[size] = i;
                SiftUp(scores, indices, size);
                size++;
            }
            else if (s > scores[indices[0]])
            {
                indices[0] = i;
                SiftDown(scores, indices, 0, size);
            }
        }

        // Heap sort in place: repeatedly move the weakest to the end, leaving best-first order.
        for (int end = size - 1; end > 0; end--)
        {
            (indices[0], indices[end]) = (indices[end], indices[0]);
            SiftDown(scores, indices, 0, end);
        }

        return size;
    }

    private static bool Weaker(ReadOnlySpan<float> scores, int a, int b) =>
        scores[a] < scores[b] || (scores[a] == scores[b] && a > b);

    private static void SiftUp(ReadOnlySpan<float> scores, Span<int> heap, int i)
    {
        while (i > 0)
        {
            int parent = (i - 1) >> 1;
            if (!Weaker(scores, heap[i], heap[parent]))
            {
                break;
            }

            (heap[i], heap[parent]) = (heap[parent], heap[i]);
            i = parent;
        }
    }

    private static void SiftDown(ReadOnlySpan<float> scores, Span<int> heap, int i, int size)
    {
        while (true)
        {
            int left = 2 * i + 1;
            if (left >= size)
            {
                return;
            }

            int weakest = left;
            int right = left + 1;
            if (right < size && Weaker(scores, heap[right], heap[left]))
            {
                weakest = right;
            }

            if (!Weaker(scores, heap[weakest], heap[i]))
            {
                return;
            }

            (heap[i], heap[weakest]) = (heap[weakest], heap[i]);
            i = weakest;
        }
    }
}
