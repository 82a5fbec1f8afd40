package cohort

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	jsoniter "github.com/json-iterator/go"
)

// decodeMatrix walks a Prometheus HTTP API answer to a query whose result
// is a matrix, calling fn with each series' labels and float samples as it
// reaches them. The Reader's reads return hundreds of thousands of series;
// decoding them into a model.Matrix (a map of labels a series, every label
// name checked through encoding/json) took a third of the controller's CPU
// at 10,000 rollouts, so the answer is read as a stream and each series' labels
// built once, sorted, in a labels.Labels.
//
// samples is reused from one series to the next. A series without float
// samples (a native histogram's) is skipped. fn may have been called for
// some series when an error is returned; an error reading body is returned
// wrapped, so a caller can tell a connection cut off from a malformed
// answer.
func decodeMatrix(body io.Reader, fn func(labels.Labels, []model.SamplePair)) error {
	it := jsoniter.Parse(jsoniter.ConfigDefault, body, 64<<10)
	var (
		status, errType, errMsg string
		sawData                 bool
	)
	var dataErr error
	it.ReadObjectCB(func(it *jsoniter.Iterator, field string) bool {
		switch field {
		case "status":
			status = it.ReadString()
		case "errorType":
			errType = it.ReadString()
		case "error":
			errMsg = it.ReadString()
		case "data":
			if status != "success" {
				// The servers write the status first; data after an
				// error or no status cannot be trusted.
				dataErr = fmt.Errorf("answer: data before a status of success (status %q)", status)
				return false
			}
			sawData = true
			dataErr = decodeData(it, fn)
			return dataErr == nil
		default:
			it.Skip()
		}
		return it.Error == nil
	})
	if dataErr != nil {
		return dataErr
	}
	if it.Error != nil && !errors.Is(it.Error, io.EOF) {
		return fmt.Errorf("answer: %w", it.Error)
	}
	switch {
	case status == "error":
		return &v1.Error{Type: v1.ErrorType(errType), Msg: errMsg}
	case status != "success":
		return fmt.Errorf("answer: status %q, want success", status)
	case !sawData:
		return errors.New("answer: no data")
	}
	return nil
}

// decodeData reads the answer's data: its resultType, then its result.
func decodeData(it *jsoniter.Iterator, fn func(labels.Labels, []model.SamplePair)) error {
	var (
		resultType string
		err        error
	)
	it.ReadObjectCB(func(it *jsoniter.Iterator, field string) bool {
		switch field {
		case "resultType":
			resultType = it.ReadString()
		case "result":
			if resultType != "matrix" {
				// The servers write the type first.
				err = fmt.Errorf("answer: result is a %q, want a matrix", resultType)
				return false
			}
			err = decodeSeries(it, fn)
			return err == nil
		default:
			it.Skip()
		}
		return it.Error == nil
	})
	switch {
	case err != nil:
		return err
	case it.Error != nil:
		return fmt.Errorf("answer's data: %w", it.Error)
	case resultType != "matrix":
		return fmt.Errorf("answer: result is a %q, want a matrix", resultType)
	}
	return nil
}

// decodeSeries reads the result's array of series.
func decodeSeries(it *jsoniter.Iterator, fn func(labels.Labels, []model.SamplePair)) error {
	var (
		b       labels.ScratchBuilder
		samples []model.SamplePair
	)
	var err error
	for n := 0; it.ReadArray(); n++ {
		b.Reset()
		samples = samples[:0]
		it.ReadObjectCB(func(it *jsoniter.Iterator, field string) bool {
			switch field {
			case "metric":
				it.ReadObjectCB(func(it *jsoniter.Iterator, name string) bool {
					b.Add(name, it.ReadString())
					return it.Error == nil
				})
			case "values":
				for it.ReadArray() {
					var p model.SamplePair
					if p, err = decodeSample(it); err != nil {
						return false
					}
					samples = append(samples, p)
				}
			default:
				it.Skip()
			}
			return it.Error == nil
		})
		if it.Error != nil {
			// A failed read of the stream explains whatever went wrong
			// after it.
			err = it.Error
		}
		if err != nil {
			return fmt.Errorf("answer: series %d: %w", n, err)
		}
		if len(samples) > 0 {
			b.Sort()
			fn(b.Labels(), samples)
		}
	}
	if it.Error != nil {
		return fmt.Errorf("answer's result: %w", it.Error)
	}
	return nil
}

// decodeSample reads one [seconds, "value"] pair.
func decodeSample(it *jsoniter.Iterator) (model.SamplePair, error) {
	if !it.ReadArray() {
		return model.SamplePair{}, errors.New("empty sample")
	}
	sec := it.ReadFloat64()
	if !it.ReadArray() {
		return model.SamplePair{}, errors.New("sample without a value")
	}
	s := it.ReadString()
	if it.ReadArray() {
		return model.SamplePair{}, errors.New("sample with more than a time and a value")
	}
	if it.Error != nil {
		return model.SamplePair{}, it.Error
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return model.SamplePair{}, fmt.Errorf("sample value %q: %w", s, err)
	}
	if math.IsNaN(sec) || math.IsInf(sec, 0) || math.Abs(sec) > math.MaxInt64/1e3 {
		return model.SamplePair{}, fmt.Errorf("sample time %v", sec)
	}
	// Prometheus writes milliseconds as seconds with three decimals.
	return model.SamplePair{Timestamp: model.Time(math.Round(sec * 1e3)), Value: model.SampleValue(v)}, nil
}

// answerError is the error an answer other than 2xx carries: the API's
// errorType and error when the body has them, otherwise the HTTP status.
func answerError(resp *http.Response, body []byte) error {
	var e struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Status == "error" {
		return &v1.Error{Type: v1.ErrorType(e.ErrorType), Msg: e.Error}
	}
	kind := v1.ErrClient
	if resp.StatusCode >= 500 {
		kind = v1.ErrServer
	}
	return &v1.Error{Type: kind, Msg: "HTTP " + resp.Status, Detail: string(body[:min(len(body), 200)])}
}
